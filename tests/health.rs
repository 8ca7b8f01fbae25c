//! Health from outside: what workers show in mt.activity while they run, and mt.metrics()
//! read by a parser of the Prometheus text format.

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant};

use multitenant_integration::{connect, create_tenants, fresh_database, replay_migrations};

#[test]
fn activity_shows_each_worker_with_its_tenant_and_migration() {
    let url = fresh_database("activity");
    let mut client = connect(&url);
    for n in 0..3 {
        let sql = format!("SELECT pg_sleep(0.4); CREATE TABLE t{n} (id int)");
        client.execute("SELECT mt.add_migration($1, $2)", &[&format!("{n:04}_slow"), &sql]).unwrap();
    }
    create_tenants(&mut client, "busy", 4);
    // Their migrations applied one by one (not a copy of the template).
    replay_migrations(&mut client);
    let run = {
        let url = url.clone();
        thread::spawn(move || {
            connect(&url).query("SELECT * FROM mt.migrate_all(concurrency => 2)", &[]).map(|r| r.len())
        })
    };

    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows = client
            .query(
                "SELECT backend_type, operation, tenant_id, schema_name, activity FROM mt.activity \
                  WHERE tenant_id IS NOT NULL AND activity LIKE 'multitenant: migrate tenant%'",
                &[],
            )
            .unwrap();
        if rows.len() == 2 || Instant::now() > deadline {
            break rows;
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(rows.len(), 2, "two workers, each on one tenant");
    for row in &rows {
        let (backend, operation): (String, String) = (row.get(0), row.get(1));
        let (schema, activity): (String, String) = (row.get(3), row.get(4));
        assert_eq!((backend.as_str(), operation.as_str()), ("multitenant worker", "migrate"));
        // What pg_stat_activity shows for the worker names the schema and the migration.
        let migration = activity.strip_prefix(&format!("multitenant: migrate {schema} ")).expect("names the schema");
        assert!(["0000_slow", "0001_slow", "0002_slow"].contains(&migration), "{activity}");
    }
    let metrics: String = client.query_one("SELECT mt.metrics()", &[]).unwrap().get(0);
    let workers = parse(&metrics).samples["multitenant_background_workers"][0].1;
    assert!(workers >= 2.0, "{workers} workers in the metrics while the run goes");

    assert_eq!(run.join().unwrap().unwrap(), 4);
    let left: i64 = client.query_one("SELECT count(*) FROM mt.activity", &[]).unwrap().get(0);
    assert_eq!(left, 0, "nothing is shown once the run is over");
}

#[test]
fn metrics_are_valid_prometheus_text() {
    let url = fresh_database("metrics");
    let mut client = connect(&url);
    client.execute("SELECT mt.add_migration('0000_one', 'CREATE TABLE one (id int)')", &[]).unwrap();
    create_tenants(&mut client, "m", 3);
    client.batch_execute("DROP SCHEMA tenant_m2 CASCADE").unwrap();
    client.query("SELECT * FROM mt.migrate_all()", &[]).unwrap();

    let text: String = client.query_one("SELECT mt.metrics('mt_test')", &[]).unwrap().get(0);
    let parsed = parse(&text);
    for family in
        ["mt_test_tenants", "mt_test_migration_duration_seconds", "mt_test_connections", "mt_test_schema_size_bytes"]
    {
        assert!(parsed.types.contains_key(family), "{family} missing from:\n{text}");
    }
    let tenants = &parsed.samples["mt_test_tenants"];
    let by_status: BTreeMap<&str, f64> = tenants.iter().map(|(labels, v)| (labels["status"].as_str(), *v)).collect();
    assert_eq!(by_status, BTreeMap::from([("ok", 2.0), ("degraded", 0.0), ("unhealthy", 1.0)]));
    // A histogram: cumulative buckets ending in +Inf, which equals _count.
    let buckets = &parsed.samples["mt_test_migration_duration_seconds_bucket"];
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "buckets are cumulative");
    assert_eq!(buckets.last().unwrap().0["le"], "+Inf");
    assert_eq!(buckets.last().unwrap().1, parsed.samples["mt_test_migration_duration_seconds_count"][0].1);
    let sizes = &parsed.samples["mt_test_schema_size_bytes"];
    assert_eq!(
        sizes.iter().map(|(l, _)| l["tenant"].as_str()).collect::<BTreeSet<_>>(),
        BTreeSet::from(["m1", "m2", "m3"])
    );
}

/// The Prometheus text exposition format, strictly: every sample belongs to a family whose
/// HELP and TYPE came first (once each), names and labels are well formed, label values
/// are escaped, values are numbers.
type Labels = BTreeMap<String, String>;

struct Parsed {
    types: BTreeMap<String, String>,
    samples: BTreeMap<String, Vec<(Labels, f64)>>,
}

fn parse(text: &str) -> Parsed {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .enumerate()
                .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()))
    };
    let mut helps = BTreeSet::new();
    let mut parsed = Parsed { types: BTreeMap::new(), samples: BTreeMap::new() };
    assert!(text.ends_with('\n'), "the text ends with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(name_ok(name) && helps.insert(name.to_string()), "HELP once per family: {line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "{line}");
            assert!(helps.contains(name), "HELP before TYPE: {line}");
            assert!(parsed.types.insert(name.to_string(), kind.to_string()).is_none(), "TYPE once: {line}");
        } else {
            let (series, value) = line.rsplit_once(' ').expect("sample: series value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("numeric value: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect("closing brace"), line)),
                None => (series, BTreeMap::new()),
            };
            assert!(name_ok(name), "metric name: {line}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| name.strip_suffix(s))
                .find(|f| parsed.types.get(*f).map(String::as_str) == Some("histogram"))
                .unwrap_or(name);
            assert!(parsed.types.contains_key(family), "sample of a declared family: {line}");
            parsed.samples.entry(name.to_string()).or_default().push((labels, value));
        }
    }
    parsed
}

fn parse_labels(text: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "label name: {line}");
        assert_eq!(chars.next(), Some('"'), "quoted label value: {line}");
        let mut value = String::new();
        loop {
            match chars.next().unwrap_or_else(|| panic!("unterminated label value: {line}")) {
                '\\' => match chars.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => panic!("bad escape {other:?}: {line}"),
                },
                '"' => break,
                '\n' => panic!("raw newline in a label value: {line}"),
                c => value.push(c),
            }
        }
        assert!(labels.insert(name, value).is_none(), "label once: {line}");
        match chars.next() {
            Some(',') | None => {}
            other => panic!("expected , after a label, got {other:?}: {line}"),
        }
    }
    labels
}
