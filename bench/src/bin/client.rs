//! Queries per second through the client, against a plain deadpool pool in the same run.
//!
//! 1,000 tenants, each with `users(id int primary key, email text)` of 100 rows. Every
//! operation checks out a connection, runs `SELECT email FROM users WHERE id = $1` (a
//! prepared statement) and gives the connection back:
//!
//! - baseline: a plain deadpool pool, no tenancy, the same query on `public.users`;
//! - shared pool: `TenantManager` in shared-pool mode, tenants in round robin (each
//!   checkout a transaction that switches `search_path`), ended by dropping the checkout
//!   (rolled back in the background), by an awaited `commit()`, or by `query_and_commit`
//!   (the `COMMIT` pipelined behind the query);
//! - pool per tenant: `max_pools` 50, tenants in round robin (the LRU churns, as it
//!   does for the predecessor with more active tenants than pools).
//!
//! - a second baseline: the plain pool with the same transaction per checkout (`BEGIN`,
//!   `set_config`, query, `COMMIT`) and no tenancy, to separate what the mandated
//!   transaction costs from what the client adds.
//!
//! Each comparison runs twice: against the server on this host, where client and server
//! share two cores and every extra message costs CPU, and through a proxy that delays each
//! direction by 1 ms, where an application and its database sit on different machines and
//! round trips, not CPU, bound the rate.
//!
//! Usage: client [TENANTS] [SECONDS]      (default 1000 5; 32 tasks, 16 connections)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use multitenant_bench::{fresh_database, url};
use multitenant_client::{Config, TenantManager};

const TASKS: usize = 32;
const CONNECTIONS: usize = 16;
const QUERY: &str = "SELECT email FROM users WHERE id = $1";

fn setup(tenants: usize) -> String {
    let database = "bench_client";
    let mut client = fresh_database(database);
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
    url(database)
}

/// Runs `op` from TASKS tasks for `seconds` untimed (warm caches: every connection sees
/// every tenant's statement), then for `seconds` timed; returns operations per second.
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

/// How a checkout ends.
#[derive(Clone, Copy)]
enum Ending {
    /// Dropped: the `ROLLBACK` is queued, not waited for.
    Dropped,
    /// `commit()` awaited after the query.
    Committed,
    /// `query_and_commit`: the `COMMIT` pipelined behind the query.
    CommittedWithQuery,
}

/// The query for tenants in round robin through `manager`, each checkout ended as `ending`.
async fn tenant_queries(seconds: u64, manager: &TenantManager, tenants: usize, ending: Ending) -> f64 {
    let manager = manager.clone();
    measure(seconds, move |n| {
        let manager = manager.clone();
        async move {
            let mut db = manager.db(&format!("t{}", n % tenants as u64 + 1)).await.unwrap();
            let id = (n % 100 + 1) as i32;
            match ending {
                Ending::Dropped => drop(db.query_one(QUERY, &[&id]).await.unwrap()),
                Ending::Committed => {
                    db.query_one(QUERY, &[&id]).await.unwrap();
                    db.commit().await.unwrap();
                }
                Ending::CommittedWithQuery => assert_eq!(db.query_and_commit(QUERY, &[&id]).await.unwrap().len(), 1),
            }
        }
    })
    .await
}

/// Every variant against one server address; prints a table of queries per second.
async fn compare(label: &str, database_url: &str, tenants: usize, seconds: u64) {
    let plain = plain_pool(database_url);
    let baseline = measure(seconds, move |n| {
        let plain = plain.clone();
        async move {
            let client = plain.get().await.unwrap();
            let statement = client.prepare_cached(QUERY).await.unwrap();
            client.query_one(&statement, &[&((n % 100 + 1) as i32)]).await.unwrap();
        }
    })
    .await;

    // The same transaction shape as a shared-pool checkout, without tenancy: what a
    // transaction per checkout costs by itself.
    let plain_tx = plain_pool(database_url);
    let baseline_tx = measure(seconds, move |n| {
        let plain = plain_tx.clone();
        async move {
            let client = plain.get().await.unwrap();
            let statement = client.prepare_cached(QUERY).await.unwrap();
            let id = (n % 100 + 1) as i32;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
            let (began, row) = tokio::join!(
                client.batch_execute("BEGIN; SELECT pg_catalog.set_config('search_path', 'public', true)"),
                client.query_one(&statement, &params)
            );
            began.and(row).unwrap();
            client.batch_execute("COMMIT").await.unwrap();
        }
    })
    .await;

    let mut config = Config::new(database_url.to_string());
    config.pool_size = CONNECTIONS;
    let shared = TenantManager::new(config.clone()).unwrap();
    let shared_drop = tenant_queries(seconds, &shared, tenants, Ending::Dropped).await;
    let shared_commit = tenant_queries(seconds, &shared, tenants, Ending::Committed).await;
    let shared_with_commit = tenant_queries(seconds, &shared, tenants, Ending::CommittedWithQuery).await;

    let mut per_tenant_config = config.pool_per_tenant(50, Duration::from_secs(600));
    per_tenant_config.pool_size = 2;
    let per_tenant = TenantManager::new(per_tenant_config).unwrap();
    let per_tenant_qps = tenant_queries(seconds, &per_tenant, tenants, Ending::Dropped).await;
    let evicted = per_tenant.metrics().pools_evicted;

    println!("{label}: {tenants} tenants in round robin, {TASKS} tasks, {CONNECTIONS} connections, {seconds} s each");
    println!("  plain deadpool pool (baseline):      {baseline:>8.0} queries/s");
    println!("  shared pool, checkout dropped:       {shared_drop:>8.0} queries/s = {:.2}x", shared_drop / baseline);
    println!(
        "  shared pool, checkout committed:     {shared_commit:>8.0} queries/s = {:.2}x",
        shared_commit / baseline
    );
    println!(
        "  shared pool, query_and_commit:       {shared_with_commit:>8.0} queries/s = {:.2}x",
        shared_with_commit / baseline
    );
    println!(
        "  plain pool, same BEGIN/set_config/COMMIT per checkout, no tenancy: {baseline_tx:>8.0} queries/s = {:.2}x; shared pool committed = {:.2}x of it",
        baseline_tx / baseline,
        shared_commit / baseline_tx
    );
    println!(
        "  pool per tenant, max_pools 50 (x2):  {per_tenant_qps:>8.0} queries/s = {:.2}x  ({evicted} pools evicted)",
        per_tenant_qps / baseline
    );
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

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tenants: usize = args.first().map(|a| a.parse().expect("TENANTS")).unwrap_or(1000);
    let seconds: u64 = args.get(1).map(|a| a.parse().expect("SECONDS")).unwrap_or(5);
    let database_url = tokio::task::spawn_blocking(move || setup(tenants)).await.unwrap();
    compare("Same host", &database_url, tenants, seconds).await;

    let config: tokio_postgres::Config = database_url.parse().unwrap();
    let (tokio_postgres::config::Host::Tcp(host), Some(port)) = (&config.get_hosts()[0], config.get_ports().first())
    else {
        panic!("the benchmark URL names a TCP host and port")
    };
    let upstream = tokio::net::lookup_host((host.as_str(), *port)).await.unwrap().next().unwrap();
    let proxy = delaying_proxy(upstream, Duration::from_millis(1)).await;
    let proxied_url = database_url.replacen(&format!("{host}:{port}"), &proxy.to_string(), 1);
    assert_ne!(proxied_url, database_url, "the URL goes through the proxy");
    compare("Through a network hop of 1 ms each way", &proxied_url, tenants, seconds).await;
}
