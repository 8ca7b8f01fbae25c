#!/usr/bin/env node
// Writes the copy of a drizzle-kit migration folder that the predecessor's CLI runs.
//
//   node prepare-migrations.mjs SOURCE_DIR OUT_DIR [MODE]
//
// drizzle-multitenant 1.3.5 runs each *.sql file as it is (one transaction per file, with
// search_path "<tenant schema>",public) and never rewrites drizzle-kit's `"public".`
// qualifiers, so on an unchanged drizzle-kit folder the first foreign key
// (REFERENCES "public"."organizations") fails in every tenant: the table is in the tenant's
// schema, not in public. MODE says what this copy does about that:
//
//   tenant  (default) drop the `public.` qualifier in front of every name the folder itself
//           creates (tables, enums, sequences, views, functions, ...): what our engine and the
//           benchmark's psql floor run (a port of crates/multitenant-core/src/sql_text.rs,
//           created_names + unqualify). Every tenant gets its own tables AND enums.
//   tables  the same for everything but types: enums stay in public, shared by all tenants.
//   none    copy the files unchanged (fails, see above).
//
// The source folder is never modified. Files are copied byte for byte apart from the
// removed qualifiers; meta/ is copied too (the CLI ignores it: it sorts *.sql by the number
// in front of the name).
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, cpSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const CREATABLE = ['table', 'type', 'sequence', 'function', 'procedure', 'view', 'domain'];
const CREATE_MODIFIERS = ['or', 'replace', 'unlogged', 'temp', 'temporary', 'materialized', 'recursive', 'global', 'local'];

const isAlpha = (c) => /[A-Za-z_]/.test(c) || c.charCodeAt(0) >= 0x80;
const isWordChar = (c) => /[A-Za-z0-9_$]/.test(c) || c.charCodeAt(0) >= 0x80;

// Tokens: {kind: 'word'|'quoted'|'dot'|'punct', value, start, end}. Literals and comments
// give no token; dollar-quoted bodies are lexed as SQL (drizzle-kit's DO $$ ... $$ blocks).
function lexInto(sql, from, to, out) {
  let i = from;
  while (i < to) {
    const c = sql[i];
    if (c === '-' && sql[i + 1] === '-') {
      const p = sql.indexOf('\n', i);
      i = p < 0 || p >= to ? to : p + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      let depth = 1;
      i += 2;
      while (i < to && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') { depth++; i += 2; }
        else if (sql[i] === '*' && sql[i + 1] === '/') { depth--; i += 2; }
        else i++;
      }
    } else if (c === "'") {
      const last = out[out.length - 1];
      const escapes = last && last.end === i && last.kind === 'word' && last.value === 'e';
      if (escapes) out.pop();
      i++;
      while (i < to) {
        if (escapes && sql[i] === '\\') i += 2;
        else if (sql[i] === "'" && sql[i + 1] === "'") i += 2;
        else if (sql[i] === "'") { i++; break; }
        else i++;
      }
      i = Math.min(i, to);
    } else if (c === '"') {
      let value = '';
      let j = i + 1;
      while (j < to) {
        if (sql[j] === '"') {
          if (sql[j + 1] === '"') { value += '"'; j += 2; continue; }
          break;
        }
        value += sql[j];
        j++;
      }
      const end = Math.min(j + 1, to);
      out.push({ kind: 'quoted', value, start: i, end });
      i = end;
    } else if (c === '$') {
      let j = i + 1;
      let tagEnd = -1;
      if (!(j < to && /[0-9]/.test(sql[j]))) {
        while (j < to && /[A-Za-z0-9_]/.test(sql[j])) j++;
        if (j < to && sql[j] === '$') tagEnd = j;
      }
      if (tagEnd >= 0) {
        const tag = sql.slice(i, tagEnd + 1);
        const bodyStart = tagEnd + 1;
        let bodyEnd = sql.indexOf(tag, bodyStart);
        if (bodyEnd < 0 || bodyEnd > to) bodyEnd = to;
        lexInto(sql, bodyStart, bodyEnd, out);
        i = Math.min(bodyEnd + tag.length, to);
      } else {
        out.push({ kind: 'punct', value: '$', start: i, end: i + 1 });
        i++;
      }
    } else if (c === '.') {
      out.push({ kind: 'dot', value: '.', start: i, end: i + 1 });
      i++;
    } else if (isAlpha(c)) {
      let j = i;
      while (j < to && isWordChar(sql[j])) j++;
      out.push({ kind: 'word', value: sql.slice(i, j).toLowerCase(), start: i, end: j });
      i = j;
    } else if (/\s/.test(c)) {
      i++;
    } else if (/[0-9]/.test(c)) {
      let j = i;
      while (j < to && /[A-Za-z0-9_]/.test(sql[j])) j++;
      out.push({ kind: 'punct', value: '0', start: i, end: j });
      i = j;
    } else {
      out.push({ kind: 'punct', value: c, start: i, end: i + 1 });
      i++;
    }
  }
}

function lex(sql) {
  const out = [];
  lexInto(sql, 0, sql.length, out);
  return out;
}

const ident = (t) => (t && (t.kind === 'word' || t.kind === 'quoted') ? t.value : undefined);
const isWord = (t, w) => t && t.kind === 'word' && t.value === w;

// Names `sql` creates in `schema` (qualified with it or unqualified): name -> kind.
function createdNames(sql, schema) {
  const tokens = lex(sql);
  const names = new Map();
  tokens.forEach((token, i) => {
    if (isWord(token, 'rename') && isWord(tokens[i + 1], 'to')) {
      let altersObject = false;
      for (let k = i - 1; k >= 0 && !(tokens[k].kind === 'punct' && tokens[k].value === ';'); k--) {
        if (isWord(tokens[k], 'alter')) { altersObject = true; break; }
      }
      const name = ident(tokens[i + 2]);
      if (altersObject && name !== undefined) names.set(name, 'renamed');
      return;
    }
    if (!isWord(token, 'create')) return;
    let j = i + 1;
    while (tokens[j] && CREATE_MODIFIERS.some((m) => isWord(tokens[j], m))) j++;
    const kind = tokens[j] && CREATABLE.find((k) => isWord(tokens[j], k));
    if (!kind) return;
    j++;
    if (isWord(tokens[j], 'if')) j += 3;
    const first = ident(tokens[j]);
    if (first === undefined) return;
    const qualified = tokens[j + 1] && tokens[j + 1].kind === 'dot';
    const second = ident(tokens[j + 2]);
    if (qualified && second !== undefined) {
      if (first === schema) names.set(second, kind);
    } else if (!qualified) {
      names.set(first, kind);
    }
  });
  return names;
}

function unqualify(sql, schema, names) {
  const tokens = lex(sql);
  let out = '';
  let copied = 0;
  let count = 0;
  for (let i = 0; i + 2 < tokens.length; i++) {
    const [q, dot, name] = [tokens[i], tokens[i + 1], tokens[i + 2]];
    const target = ident(q) === schema && dot.kind === 'dot' && dot.start === q.end &&
      name.start === dot.end && names.has(ident(name));
    const precededByDot = i > 0 && tokens[i - 1].kind === 'dot' && tokens[i - 1].end === q.start;
    if (target && !precededByDot) {
      out += sql.slice(copied, q.start);
      copied = dot.end;
      count++;
    }
  }
  return [out + sql.slice(copied), count];
}

const [src, dst, mode = 'tenant'] = process.argv.slice(2);
if (!src || !dst || !['tenant', 'tables', 'none'].includes(mode)) {
  console.error('usage: prepare-migrations.mjs SOURCE_DIR OUT_DIR [tenant|tables|none]');
  process.exit(2);
}
rmSync(dst, { recursive: true, force: true });
mkdirSync(dst, { recursive: true });
if (existsSync(join(src, 'meta'))) cpSync(join(src, 'meta'), join(dst, 'meta'), { recursive: true });
const files = readdirSync(src).filter((f) => f.endsWith('.sql')).sort();
const created = new Map();
let removed = 0;
for (const file of files) {
  const sql = readFileSync(join(src, file), 'utf8');
  let text = sql;
  if (mode !== 'none') {
    for (const [name, kind] of createdNames(sql, 'public')) if (!created.has(name)) created.set(name, kind);
    const targets = new Set([...created].filter(([, kind]) => mode === 'tenant' || kind !== 'type').map(([n]) => n));
    let count;
    [text, count] = unqualify(sql, 'public', targets);
    removed += count;
  }
  writeFileSync(join(dst, file), text);
}
console.error(`prepare-migrations: ${files.length} files, mode ${mode}, ${removed} qualifiers removed -> ${dst}`);
