//! One application process of the PgBouncer test (tests/pgbouncer.rs starts two at once).
//!
//!   mt-pooler-load URL DRIVER MODE TASKS OPS TENANTS SEED
//!
//! DRIVER: `tokio-postgres` or `sqlx`. MODE: `shared` (shared pool, unnamed statements),
//! `per-tenant` (a pool per tenant, unnamed statements), `prepared` (shared pool, named
//! cached statements: the mode that is *not* safe behind a transaction pooler; the test runs
//! it as a control). TASKS tasks run OPS operations in all over tenants `t1..tTENANTS`, each
//! a checkout of a random tenant with one to three statements of random shapes, and check
//! every answer: the tenant's own marker, role and search_path (else a leak), the columns
//! and values each statement asked for (else a wrong statement), no error. Prints one line:
//!
//!   RESULT ops=N errors=N wrong=N leaks=N inserts=N elapsed_ms=N
//!
//! `inserts` counts committed inserts into the tenants' `events` tables, which the test
//! compares with what the tables hold; rows inserted by checkouts dropped without commit
//! are written as `rolledback` and must not be there.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multitenant_client::{Config, TenantManager};

#[derive(Default)]
struct Stats {
    ops: AtomicU64,
    errors: AtomicU64,
    wrong: AtomicU64,
    leaks: AtomicU64,
    inserts: AtomicU64,
    reported: AtomicU64,
}

enum Failure {
    Error(String),
    Wrong(String),
    Leak(String),
}

impl Stats {
    fn record(&self, outcome: Result<(), Failure>) {
        self.ops.fetch_add(1, Ordering::Relaxed);
        let (counter, what, message) = match outcome {
            Ok(()) => return,
            Err(Failure::Error(m)) => (&self.errors, "error", m),
            Err(Failure::Wrong(m)) => (&self.wrong, "wrong statement", m),
            Err(Failure::Leak(m)) => (&self.leaks, "leak", m),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if self.reported.fetch_add(1, Ordering::Relaxed) < 10 {
            eprintln!("{what}: {message}");
        }
    }
}

/// xorshift64*: enough randomness for picking tenants and shapes, reproducible by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What one operation does: statements drawn from these shapes.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// `SELECT name FROM marker`: one column, the tenant's id.
    Marker,
    /// `SELECT name, $1::int4 AS a<v>, $2::text AS b<v> FROM marker`: eight texts, three columns.
    Params(u64),
    /// `SELECT current_user, current_setting('search_path'), name FROM marker`.
    Identity,
    /// `SELECT count(*) AS foreign_rows FROM events WHERE who <> $1`: must be 0.
    Foreign,
    /// `UPDATE events SET n = n WHERE who = $1 AND id < 0`: changes 0 rows.
    Update,
}

const SHAPES: u64 = 5;

fn shape(rng: &mut Rng) -> Shape {
    match rng.below(SHAPES) {
        0 => Shape::Marker,
        1 => Shape::Params(rng.below(8)),
        2 => Shape::Identity,
        3 => Shape::Foreign,
        _ => Shape::Update,
    }
}

fn sql(shape: Shape) -> String {
    match shape {
        Shape::Marker => "SELECT name FROM marker".into(),
        Shape::Params(v) => format!("SELECT name, $1::int4 AS a{v}, $2::text AS b{v} FROM marker"),
        Shape::Identity => {
            "SELECT current_user::text AS who_am_i, current_setting('search_path') AS path, name FROM marker".into()
        }
        Shape::Foreign => "SELECT count(*) AS foreign_rows FROM events WHERE who <> $1".into(),
        Shape::Update => "UPDATE events SET n = n WHERE who = $1 AND id < 0".into(),
    }
}

const INSERT: &str = "INSERT INTO events (who, n) VALUES ($1, $2) RETURNING who, n";

/// What a tenant must look like from inside its checkout.
struct Expect<'a> {
    tenant: &'a str,
    role: &'a str,
    path: String,
}

/// Checks one row (as column names and text values) against the shape's expectation.
fn check(shape: Shape, expect: &Expect, columns: &[String], values: &[String], x: i32, s: &str) -> Result<(), Failure> {
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    let wrong =
        |what: &str| Err(Failure::Wrong(format!("{shape:?} for {}: {what}: {names:?} {values:?}", expect.tenant)));
    let leak = |what: &str| Err(Failure::Leak(format!("{shape:?} for {}: {what}: {values:?}", expect.tenant)));
    match shape {
        Shape::Marker => {
            if names != ["name"] {
                return wrong("columns");
            }
            if values[0] != expect.tenant {
                return leak("another tenant's marker");
            }
        }
        Shape::Params(v) => {
            if names != ["name".to_string(), format!("a{v}"), format!("b{v}")] {
                return wrong("columns");
            }
            if values[1] != x.to_string() || values[2] != s {
                return wrong("values");
            }
            if values[0] != expect.tenant {
                return leak("another tenant's marker");
            }
        }
        Shape::Identity => {
            if names != ["who_am_i", "path", "name"] {
                return wrong("columns");
            }
            if values[0] != expect.role || values[1] != expect.path || values[2] != expect.tenant {
                return leak("another identity");
            }
        }
        Shape::Foreign => {
            if names != ["foreign_rows"] {
                return wrong("columns");
            }
            if values[0] != "0" {
                return leak("rows of another tenant in its table");
            }
        }
        Shape::Update => {
            if values != ["0"] {
                return wrong("an UPDATE that changes nothing changed rows");
            }
        }
    }
    Ok(())
}

mod tokio_driver {
    use super::*;
    use multitenant_client::{Row, ToSql};

    fn text(row: &Row) -> (Vec<String>, Vec<String>) {
        let columns = row.columns().iter().map(|c| c.name().to_string()).collect();
        let values = (0..row.len())
            .map(|i| match row.columns()[i].type_().name() {
                "int4" => row.get::<_, i32>(i).to_string(),
                "int8" => row.get::<_, i64>(i).to_string(),
                _ => row.try_get::<_, String>(i).unwrap_or_else(|e| format!("<{e}>")),
            })
            .collect();
        (columns, values)
    }

    async fn statement(
        db: &mut multitenant_client::TenantClient,
        shape: Shape,
        expect: &Expect<'_>,
        x: i32,
    ) -> Result<(), Failure> {
        let s = format!("s{x}");
        let sql = sql(shape);
        let params: Vec<&(dyn ToSql + Sync)> = match shape {
            Shape::Marker | Shape::Identity => vec![],
            Shape::Params(_) => vec![&x, &s],
            Shape::Foreign | Shape::Update => vec![&expect.tenant],
        };
        if let Shape::Update = shape {
            let n = db.execute(&sql, &params).await.map_err(|e| Failure::Error(format!("{sql}: {e}")))?;
            return check(shape, expect, &[], &[n.to_string()], x, &s);
        }
        let rows = db.query(&sql, &params).await.map_err(|e| Failure::Error(format!("{sql}: {e}")))?;
        let [row] = &rows[..] else {
            return Err(Failure::Wrong(format!("{shape:?} for {}: {} rows", expect.tenant, rows.len())));
        };
        let (columns, values) = text(row);
        check(shape, expect, &columns, &values, x, &s)
    }

    /// One operation: a checkout, one to three statements, and an end: commit, commit
    /// pipelined with an insert, or a drop (rollback) after an insert.
    pub async fn operation(
        manager: &TenantManager,
        rng: &mut Rng,
        expect: &Expect<'_>,
        stats: &Stats,
    ) -> Result<(), Failure> {
        let mut db = manager.db(expect.tenant).await.map_err(|e| Failure::Error(format!("checkout: {e}")))?;
        for _ in 0..=rng.below(3) {
            let x = rng.below(1_000_000) as i32;
            statement(&mut db, shape(rng), expect, x).await?;
        }
        let x = rng.below(1_000_000) as i32;
        match rng.below(4) {
            0 => {
                let rows = db
                    .query_and_commit(INSERT, &[&expect.tenant, &x])
                    .await
                    .map_err(|e| Failure::Error(format!("insert and commit: {e}")))?;
                stats.inserts.fetch_add(1, Ordering::Relaxed);
                let [row] = &rows[..] else {
                    return Err(Failure::Wrong(format!("insert returned {} rows", rows.len())));
                };
                let (columns, values) = text(row);
                if columns != ["who", "n"] || values != [expect.tenant.to_string(), x.to_string()] {
                    return Err(Failure::Wrong(format!("insert returned {columns:?} {values:?}")));
                }
                Ok(())
            }
            1 => {
                db.execute("INSERT INTO events (who, n) VALUES ('rolledback', $1)", &[&x])
                    .await
                    .map_err(|e| Failure::Error(format!("insert before a drop: {e}")))?;
                drop(db); // rolls back
                Ok(())
            }
            _ => db.commit().await.map_err(|e| Failure::Error(format!("commit: {e}"))),
        }
    }
}

async fn run(url: String, driver: String, mode: String, tasks: u64, ops: u64, tenants: u64, seed: u64) {
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    match driver.as_str() {
        "tokio-postgres" => {
            let mut config = Config::new(url);
            config.pool_size = 16;
            config.checkout_timeout = Duration::from_secs(30);
            config = match mode.as_str() {
                "shared" => config.behind_transaction_pooler(),
                "per-tenant" => {
                    let mut config = config.behind_transaction_pooler().pool_per_tenant(50, Duration::from_secs(60));
                    config.pool_size = 2;
                    config
                }
                "prepared" => config,
                other => panic!("mode {other}"),
            };
            let manager = TenantManager::connect(config).await.expect("connect through the pooler");
            let mut roles = Vec::new();
            for n in 1..=tenants {
                let info = manager.tenant(&format!("t{n}")).await.expect("tenant in the directory");
                roles.push(info.role_name.expect("tenants have roles"));
            }
            let roles = Arc::new(roles);
            let handles: Vec<_> = (0..tasks)
                .map(|task| {
                    let (manager, stats, next, roles) = (manager.clone(), stats.clone(), next.clone(), roles.clone());
                    tokio::spawn(async move {
                        let mut rng = Rng(seed.wrapping_mul(1_000_003).wrapping_add(task * 7919 + 1) | 1);
                        while next.fetch_add(1, Ordering::Relaxed) < ops {
                            let n = rng.below(tenants) + 1;
                            let tenant = format!("t{n}");
                            let expect = Expect {
                                tenant: &tenant,
                                role: &roles[n as usize - 1],
                                path: format!("\"tenant_{tenant}\""),
                            };
                            let outcome = tokio_driver::operation(&manager, &mut rng, &expect, &stats).await;
                            stats.record(outcome);
                        }
                    })
                })
                .collect();
            for handle in handles {
                handle.await.expect("task panicked");
            }
        }
        "sqlx" => sqlx_driver::run(&url, &mode, tasks, ops, tenants, seed, &stats, &next).await,
        other => panic!("driver {other}"),
    }
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "RESULT ops={} errors={} wrong={} leaks={} inserts={} elapsed_ms={}",
        get(&stats.ops),
        get(&stats.errors),
        get(&stats.wrong),
        get(&stats.leaks),
        get(&stats.inserts),
        started.elapsed().as_millis()
    );
}

mod sqlx_driver {
    use super::*;
    use multitenant_client::sqlx::{SqlxConfig, SqlxTenantPool, SqlxTenantTx};
    use sqlx::postgres::PgRow;
    use sqlx::{Column, Row, TypeInfo};

    fn text(row: &PgRow) -> (Vec<String>, Vec<String>) {
        let columns = row.columns().iter().map(|c| c.name().to_string()).collect();
        let values = row
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| match c.type_info().name() {
                "INT4" => row.get::<i32, _>(i).to_string(),
                "INT8" => row.get::<i64, _>(i).to_string(),
                _ => row.try_get::<String, _>(i).unwrap_or_else(|e| format!("<{e}>")),
            })
            .collect();
        (columns, values)
    }

    async fn statement(tx: &mut SqlxTenantTx, shape: Shape, expect: &Expect<'_>, x: i32) -> Result<(), Failure> {
        let s = format!("s{x}");
        let sql = sql(shape);
        let query = match shape {
            Shape::Marker | Shape::Identity => sqlx::query(&sql),
            Shape::Params(_) => sqlx::query(&sql).bind(x).bind(&s),
            Shape::Foreign | Shape::Update => sqlx::query(&sql).bind(expect.tenant),
        };
        if let Shape::Update = shape {
            let done = query.execute(&mut *tx).await.map_err(|e| Failure::Error(format!("{sql}: {e}")))?;
            return check(shape, expect, &[], &[done.rows_affected().to_string()], x, &s);
        }
        let rows = query.fetch_all(&mut *tx).await.map_err(|e| Failure::Error(format!("{sql}: {e}")))?;
        let [row] = &rows[..] else {
            return Err(Failure::Wrong(format!("{shape:?} for {}: {} rows", expect.tenant, rows.len())));
        };
        let (columns, values) = text(row);
        check(shape, expect, &columns, &values, x, &s)
    }

    async fn operation(
        pool: &SqlxTenantPool,
        rng: &mut Rng,
        expect: &Expect<'_>,
        stats: &Stats,
    ) -> Result<(), Failure> {
        let mut tx = pool.begin(expect.tenant).await.map_err(|e| Failure::Error(format!("checkout: {e}")))?;
        for _ in 0..=rng.below(3) {
            let x = rng.below(1_000_000) as i32;
            statement(&mut tx, shape(rng), expect, x).await?;
        }
        let x = rng.below(1_000_000) as i32;
        match rng.below(4) {
            0 => {
                let rows = sqlx::query(INSERT)
                    .bind(expect.tenant)
                    .bind(x)
                    .fetch_all(&mut tx)
                    .await
                    .map_err(|e| Failure::Error(format!("insert: {e}")))?;
                tx.commit().await.map_err(|e| Failure::Error(format!("commit: {e}")))?;
                stats.inserts.fetch_add(1, Ordering::Relaxed);
                let [row] = &rows[..] else {
                    return Err(Failure::Wrong(format!("insert returned {} rows", rows.len())));
                };
                let (columns, values) = text(row);
                if columns != ["who", "n"] || values != [expect.tenant.to_string(), x.to_string()] {
                    return Err(Failure::Wrong(format!("insert returned {columns:?} {values:?}")));
                }
                Ok(())
            }
            1 => {
                sqlx::query("INSERT INTO events (who, n) VALUES ('rolledback', $1)")
                    .bind(x)
                    .execute(&mut tx)
                    .await
                    .map_err(|e| Failure::Error(format!("insert before a drop: {e}")))?;
                drop(tx); // rolls back
                Ok(())
            }
            _ => tx.commit().await.map_err(|e| Failure::Error(format!("commit: {e}"))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        url: &str,
        mode: &str,
        tasks: u64,
        ops: u64,
        tenants: u64,
        seed: u64,
        stats: &Arc<Stats>,
        next: &Arc<AtomicU64>,
    ) {
        let config = match mode {
            "shared" => SqlxConfig::default().behind_transaction_pooler(),
            "prepared" => SqlxConfig::default(),
            other => panic!("mode {other} (sqlx: shared or prepared)"),
        };
        let pool = SqlxTenantPool::connect(url, 16, config).await.expect("connect through the pooler");
        let mut roles = Vec::new();
        for n in 1..=tenants {
            let info = pool.tenant(&format!("t{n}")).await.expect("tenant in the directory");
            roles.push(info.role_name.expect("tenants have roles"));
        }
        let roles = Arc::new(roles);
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let (pool, stats, next, roles) = (pool.clone(), stats.clone(), next.clone(), roles.clone());
                tokio::spawn(async move {
                    let mut rng = Rng(seed.wrapping_mul(1_000_003).wrapping_add(task * 7919 + 1) | 1);
                    while next.fetch_add(1, Ordering::Relaxed) < ops {
                        let n = rng.below(tenants) + 1;
                        let tenant = format!("t{n}");
                        let expect = Expect {
                            tenant: &tenant,
                            role: &roles[n as usize - 1],
                            path: format!("\"tenant_{tenant}\""),
                        };
                        let outcome = operation(&pool, &mut rng, &expect, &stats).await;
                        stats.record(outcome);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("task panicked");
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, driver, mode, tasks, ops, tenants, seed] = &args[..] else {
        eprintln!("usage: mt-pooler-load URL DRIVER MODE TASKS OPS TENANTS SEED");
        std::process::exit(2);
    };
    let number = |s: &str| s.parse::<u64>().expect("a number");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run(
        url.clone(),
        driver.clone(),
        mode.clone(),
        number(tasks),
        number(ops),
        number(tenants),
        number(seed),
    ));
}
