//! Queries per second through the client, against a plain pool of the same driver in the same
//! run, for both drivers (tokio-postgres and sqlx), connected directly and through a real
//! PgBouncer in transaction mode.
//!
//! TENANTS tenants, each with `users(id int primary key, email text)` of 100 rows. Every
//! operation checks out a connection, runs `SELECT email FROM users WHERE id = $1` and gives
//! the connection back; 32 tasks share 16 connections (16 client connections to PgBouncer,
//! whose pool has 16 server connections). Variants:
//!
//! - tokio-postgres baseline: a plain deadpool-postgres pool, no tenancy, the query on
//!   `public.users` (a cached named statement directly; unnamed, `query_typed`, through
//!   PgBouncer, where named statements do not survive);
//! - the same plain pool with the transaction a checkout costs (`BEGIN`, `set_config`, the
//!   query, `COMMIT`), no tenancy: what the mandated transaction costs by itself;
//! - `TenantManager` (shared pool; `behind_transaction_pooler()` through PgBouncer), tenants in
//!   round robin, each checkout ended by `query_and_commit` (the `COMMIT` pipelined behind the
//!   query) or by an awaited `commit()`; directly, also with unnamed statements
//!   (`behind_transaction_pooler()`), which have no per-connection cache to miss;
//! - sqlx baseline: a plain `PgPool`, `sqlx::query(…).fetch_one(&pool)` (cached statements),
//!   directly; through PgBouncer (`statement_cache_capacity(0)`, `persistent(false)`) the
//!   same in a transaction of its own (`begin`, query, `commit`), since sqlx's unnamed
//!   statement outside a transaction is not safe there (it spans two Syncs: PgBouncer may
//!   switch server connections in between, 26000); that form is measured directly too;
//! - `SqlxTenantPool` over the same kind of pool (`behind_transaction_pooler()` through
//!   PgBouncer): `begin(tenant)`, the query, `commit()`.
//!
//! Each variant runs SECONDS untimed (warm caches), then SECONDS timed. Ratios are against
//! the same driver's plain pool on the same path.
//!
//! Usage: client [TENANTS] [SECONDS] [--hop]      (default 1000 3)
//!
//! `MT_BENCH_URL` is the server; `MT_BENCH_PGBOUNCER_URL` (the same server through PgBouncer
//! in transaction mode, which `bench/run.sh client` starts) adds the PgBouncer path. `--hop`
//! adds both paths again through a proxy that delays each direction by 1 ms (an application
//! and its database on different machines).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use multitenant_bench::{fresh_database, url};
use multitenant_client::sqlx::{SqlxConfig, SqlxTenantPool};
use multitenant_client::{Config, TenantManager};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::Row;
use tokio_postgres::types::{ToSql, Type};

const TASKS: usize = 32;
const CONNECTIONS: usize = 16;
const QUERY: &str = "SELECT email FROM users WHERE id = $1";
const DATABASE: &str = "bench_client";

fn setup(tenants: usize) -> String {
    let mut client = fresh_database(DATABASE);
    // Tenant roles are cluster-wide: this database's have names of their own (fresh_database
    // dropped those an earlier run left).
    client.batch_execute("SELECT mt.set_config('tenant_role_template', 'bench_client_{schema}')").unwrap();
    client
        .batch_execute(
            "SELECT mt.add_migration('0000_users', 'CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL);
               INSERT INTO users SELECT g, ''user'' || g || ''@example.com'' FROM generate_series(1, 100) g');
             CREATE TABLE public.users (id int PRIMARY KEY, email text NOT NULL);
             INSERT INTO public.users SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 100) g;",
        )
        .unwrap();
    client
        .execute(
            "SELECT count(*) FROM (SELECT mt.create_tenant('t' || g, migrate => false) FROM generate_series(1, $1) g) s",
            &[&(tenants as i32)],
        )
        .unwrap();
    client.query("SELECT * FROM mt.migrate_all()", &[]).unwrap();
    url(DATABASE)
}

/// Runs `op` from TASKS tasks for `seconds` untimed (warm caches), then for `seconds` timed;
/// returns operations per second.
async fn measure<F, Fut>(seconds: u64, op: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    run_for(seconds, op.clone()).await;
    run_for(seconds, op).await
}

async fn run_for<F, Fut>(seconds: u64, op: Arc<F>) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (op, counter) = (op.clone(), counter.clone());
            tokio::spawn(async move {
                let mut n = task as u64;
                while Instant::now() < deadline {
                    op(n).await;
                    counter.fetch_add(1, Ordering::Relaxed);
                    n += TASKS as u64;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    counter.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// A plain deadpool pool with no tenancy, as an application would have without us.
fn plain_pool(url: &str) -> Pool {
    let manager = Manager::from_config(
        url.parse().unwrap(),
        tokio_postgres::NoTls,
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    Pool::builder(manager).max_size(CONNECTIONS).runtime(Runtime::Tokio1).build().unwrap()
}

fn id_of(n: u64) -> i32 {
    (n % 100 + 1) as i32
}

fn tenant_of(n: u64, tenants: usize) -> String {
    format!("t{}", n % tenants as u64 + 1)
}

/// How a tokio-postgres checkout ends.
#[derive(Clone, Copy)]
enum Ending {
    /// `query_and_commit`: the `COMMIT` pipelined behind the query.
    QueryAndCommit,
    /// `commit()` awaited after the query.
    Committed,
}

/// One path to the server: directly, or through PgBouncer in transaction mode.
struct Path {
    label: String,
    url: String,
    pooler: bool,
}

/// A measured variant: its name, queries per second, and its baseline's index.
struct Figure {
    name: &'static str,
    qps: f64,
    baseline: usize,
}

async fn tokio_postgres_variants(path: &Path, tenants: usize, seconds: u64, figures: &mut Vec<Figure>) {
    let pooler = path.pooler;
    let plain = plain_pool(&path.url);
    let baseline = figures.len();
    let qps = measure(seconds, move |n| {
        let plain = plain.clone();
        async move {
            let client = plain.get().await.unwrap();
            let id = id_of(n);
            if pooler {
                client.query_typed_one(QUERY, &[(&id, Type::INT4)]).await.unwrap();
            } else {
                let statement = client.prepare_cached(QUERY).await.unwrap();
                client.query_one(&statement, &[&id]).await.unwrap();
            }
        }
    })
    .await;
    figures.push(Figure { name: "tokio-postgres: plain deadpool pool, no tenancy (baseline)", qps, baseline });

    let plain_tx = plain_pool(&path.url);
    let qps = measure(seconds, move |n| {
        let plain = plain_tx.clone();
        async move {
            let client = plain.get().await.unwrap();
            let id = id_of(n);
            let begin = client.batch_execute("BEGIN; SELECT pg_catalog.set_config('search_path', 'public', true)");
            if pooler {
                let params: [(&(dyn ToSql + Sync), Type); 1] = [(&id, Type::INT4)];
                let (began, row) = tokio::join!(begin, client.query_typed_one(QUERY, &params));
                began.and(row).unwrap();
            } else {
                let statement = client.prepare_cached(QUERY).await.unwrap();
                let params: [&(dyn ToSql + Sync); 1] = [&id];
                let (began, row) = tokio::join!(begin, client.query_one(&statement, &params));
                began.and(row).unwrap();
            }
            client.batch_execute("COMMIT").await.unwrap();
        }
    })
    .await;
    figures.push(Figure { name: "tokio-postgres: plain pool, BEGIN + set_config + query + COMMIT", qps, baseline });

    let mut config = Config::new(path.url.clone());
    config.pool_size = CONNECTIONS;
    if pooler {
        config = config.behind_transaction_pooler();
    }
    let manager = TenantManager::new(config).unwrap();
    for (name, ending) in [
        ("tokio-postgres: TenantManager, query_and_commit", Ending::QueryAndCommit),
        ("tokio-postgres: TenantManager, query + commit()", Ending::Committed),
    ] {
        let manager = manager.clone();
        let qps = measure(seconds, move |n| {
            let manager = manager.clone();
            async move {
                let mut db = manager.db(&tenant_of(n, tenants)).await.unwrap();
                let id = id_of(n);
                match ending {
                    Ending::QueryAndCommit => assert_eq!(db.query_and_commit(QUERY, &[&id]).await.unwrap().len(), 1),
                    Ending::Committed => {
                        db.query_one(QUERY, &[&id]).await.unwrap();
                        db.commit().await.unwrap();
                    }
                }
            }
        })
        .await;
        figures.push(Figure { name, qps, baseline });
    }
    if !pooler {
        println!("{}: {}", path.label, statement_cache_memory(&manager, tenants).await);
    }
    assert_eq!(manager.metrics().errors, 0, "the client saw errors");
    manager.dispose();

    if !pooler {
        // Directly, unnamed statements too (what behind_transaction_pooler() sets): no
        // per-connection statement cache to miss when tenants outnumber its 100 entries.
        let mut config = Config::new(path.url.clone()).behind_transaction_pooler();
        config.pool_size = CONNECTIONS;
        let manager = TenantManager::new(config).unwrap();
        let unnamed = manager.clone();
        let qps = measure(seconds, move |n| {
            let manager = unnamed.clone();
            async move {
                let db = manager.db(&tenant_of(n, tenants)).await.unwrap();
                assert_eq!(db.query_and_commit(QUERY, &[&id_of(n)]).await.unwrap().len(), 1);
            }
        })
        .await;
        figures.push(Figure {
            name: "tokio-postgres: TenantManager, unnamed statements, query_and_commit",
            qps,
            baseline,
        });
        assert_eq!(manager.metrics().errors, 0, "the client saw errors");
        manager.dispose();
    }
}

/// What the statement cache of one connection holds on the server after the named-statement
/// variants: its prepared statements and the memory of their cached plans, read by the
/// connection itself (`pg_backend_memory_contexts` shows only its own backend, and only to
/// superusers).
async fn statement_cache_memory(manager: &TenantManager, tenants: usize) -> String {
    let mut db = manager.db(&tenant_of(0, tenants)).await.unwrap();
    // The view is for superusers: back to the session's own role, for this transaction only.
    db.query("SET LOCAL ROLE NONE", &[]).await.unwrap();
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM pg_catalog.pg_prepared_statements), \
                    (SELECT coalesce(sum(total_bytes), 0)::bigint FROM pg_catalog.pg_backend_memory_contexts \
                      WHERE name IN ('CachedPlanSource', 'CachedPlanQuery', 'CachedPlan'))",
            &[],
        )
        .await
        .unwrap();
    db.commit().await.unwrap();
    let (statements, bytes): (i64, i64) = (row.get(0), row.get(1));
    format!(
        "statement cache of one connection on the server: {statements} prepared statements, {:.0} kB of cached plans ({:.1} kB each)",
        bytes as f64 / 1024.0,
        bytes as f64 / 1024.0 / statements.max(1) as f64
    )
}

/// A sqlx pool of CONNECTIONS; behind a pooler without sqlx's statement cache.
fn sqlx_pool(url: &str, pooler: bool) -> sqlx::PgPool {
    let mut options: PgConnectOptions = url.parse().unwrap();
    if pooler {
        options = options.statement_cache_capacity(0);
    }
    PgPoolOptions::new().max_connections(CONNECTIONS as u32).connect_lazy_with(options)
}

async fn sqlx_variants(path: &Path, tenants: usize, seconds: u64, figures: &mut Vec<Figure>) {
    let pooler = path.pooler;
    let mut baseline = figures.len();
    if !pooler {
        // One statement, autocommit. Not through PgBouncer: sqlx sends an unnamed statement's
        // Parse and its Bind after separate Syncs, and outside a transaction PgBouncer may
        // hand the server connection to another client in between (26000 "unnamed prepared
        // statement does not exist").
        let plain = sqlx_pool(&path.url, pooler);
        let qps = measure(seconds, move |n| {
            let plain = plain.clone();
            async move {
                let row = sqlx::query(QUERY).bind(id_of(n)).fetch_one(&plain).await.unwrap();
                let _: String = row.get(0);
            }
        })
        .await;
        figures.push(Figure { name: "sqlx: plain PgPool, one statement, no tenancy (baseline)", qps, baseline });
    }

    // The same in a transaction of its own, no tenancy: the baseline through PgBouncer.
    let plain_tx = sqlx_pool(&path.url, pooler);
    if pooler {
        baseline = figures.len();
    }
    let qps = measure(seconds, move |n| {
        let plain = plain_tx.clone();
        async move {
            let mut tx = plain.begin().await.unwrap();
            let row = sqlx::query(QUERY).bind(id_of(n)).persistent(!pooler).fetch_one(&mut *tx).await.unwrap();
            let _: String = row.get(0);
            tx.commit().await.unwrap();
        }
    })
    .await;
    let name = if pooler {
        "sqlx: plain PgPool, begin + query + commit, no tenancy (baseline)"
    } else {
        "sqlx: plain PgPool, begin + query + commit, no tenancy"
    };
    figures.push(Figure { name, qps, baseline });

    let mut config = SqlxConfig::default();
    if pooler {
        config = config.behind_transaction_pooler();
    }
    let pool = SqlxTenantPool::new(sqlx_pool(&path.url, pooler), config).unwrap();
    let tenant_pool = pool.clone();
    let qps = measure(seconds, move |n| {
        let pool = tenant_pool.clone();
        async move {
            let mut tx = pool.begin(&tenant_of(n, tenants)).await.unwrap();
            let row = sqlx::query(QUERY).bind(id_of(n)).fetch_one(&mut tx).await.unwrap();
            let _: String = row.get(0);
            tx.commit().await.unwrap();
        }
    })
    .await;
    figures.push(Figure { name: "sqlx: SqlxTenantPool, begin + query + commit", qps, baseline });
    assert!(!pool.prometheus().contains("kind=\"sqlx\""), "the sqlx pool saw errors");
    pool.pool().close().await;
}

async fn compare(path: &Path, tenants: usize, seconds: u64) {
    let mut figures = Vec::new();
    tokio_postgres_variants(path, tenants, seconds, &mut figures).await;
    sqlx_variants(path, tenants, seconds, &mut figures).await;
    println!(
        "{}: {tenants} tenants in round robin, {TASKS} tasks, {CONNECTIONS} connections, {seconds} s each",
        path.label
    );
    for figure in &figures {
        let base = figures[figure.baseline].qps;
        println!("  {:<70} {:>8.0} queries/s = {:.2}x", figure.name, figure.qps, figure.qps / base);
    }
}

/// A TCP proxy to `upstream` that delays every chunk by `one_way` in each direction: the
/// network hop between an application and its database. Returns the address to use.
async fn delaying_proxy(upstream: std::net::SocketAddr, one_way: Duration) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { continue };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let ((client_read, client_write), (server_read, server_write)) = (client.into_split(), server.into_split());
            tokio::spawn(forward_later(client_read, server_write, one_way));
            tokio::spawn(forward_later(server_read, client_write, one_way));
        }
    });
    address
}

async fn forward_later(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (queue, mut due) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    tokio::spawn(async move {
        while let Some((at, bytes)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buffer).await {
        if queue.send((tokio::time::Instant::now() + delay, buffer[..n].to_vec())).is_err() {
            break;
        }
    }
}

/// `url` with its host and port replaced by a delaying proxy's.
async fn through_hop(url: &str) -> String {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let (tokio_postgres::config::Host::Tcp(host), Some(port)) = (&config.get_hosts()[0], config.get_ports().first())
    else {
        panic!("the benchmark URL names a TCP host and port")
    };
    let upstream = tokio::net::lookup_host((host.as_str(), *port)).await.unwrap().next().unwrap();
    let proxy = delaying_proxy(upstream, Duration::from_millis(1)).await;
    let proxied = url.replacen(&format!("{host}:{port}"), &proxy.to_string(), 1);
    assert_ne!(proxied, url, "the URL goes through the proxy");
    proxied
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let hop = args.iter().any(|a| a == "--hop");
    let numbers: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let tenants: usize = numbers.first().map(|a| a.parse().expect("TENANTS")).unwrap_or(1000);
    let seconds: u64 = numbers.get(1).map(|a| a.parse().expect("SECONDS")).unwrap_or(3);
    let database_url = tokio::task::spawn_blocking(move || setup(tenants)).await.unwrap();

    let mut paths = vec![Path { label: "Direct (same host)".into(), url: database_url.clone(), pooler: false }];
    match std::env::var("MT_BENCH_PGBOUNCER_URL") {
        Ok(base) => paths.push(Path {
            label: "Through PgBouncer, transaction mode (same host)".into(),
            url: format!("{base}/{DATABASE}"),
            pooler: true,
        }),
        Err(_) => println!("MT_BENCH_PGBOUNCER_URL is not set: the PgBouncer path is skipped"),
    }
    if hop {
        for index in 0..paths.len() {
            let url = through_hop(&paths[index].url).await;
            let label = format!("{}, through a network hop of 1 ms each way", paths[index].label);
            paths.push(Path { label, url, pooler: paths[index].pooler });
        }
    }
    for path in &paths {
        compare(path, tenants, seconds).await;
    }
}
