//! Shared by the benchmark binaries: connecting, timing, printing.

use std::time::{Duration, Instant};

pub use postgres::{Client, NoTls};

pub fn url(database: &str) -> String {
    let base = std::env::var("MT_BENCH_URL").unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:25353".into());
    format!("{base}/{database}")
}

pub fn connect(database: &str) -> Client {
    Client::connect(&url(database), NoTls).unwrap_or_else(|e| panic!("connect to {}: {e}", url(database)))
}

/// A fresh database with the extension.
pub fn fresh_database(name: &str) -> Client {
    let mut admin = connect("postgres");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
    // Tenant roles outlive their database (roles are cluster-wide): the last round's go too.
    drop_tenant_roles(&mut admin, name);
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let mut client = connect(name);
    client.batch_execute("SET client_min_messages = warning; CREATE EXTENSION multitenant").unwrap();
    client
}

/// Drops the tenant roles the extension made for `database` (their comments name it), a
/// batch of 500 per transaction: thousands in one would run out of lock slots.
pub fn drop_tenant_roles(admin: &mut Client, database: &str) {
    let drops: Vec<String> = admin
        .query(
            "SELECT format('DROP ROLE %I', a.rolname) FROM pg_authid a
               JOIN pg_shdescription d ON d.objoid = a.oid AND d.classoid = 'pg_authid'::regclass
              WHERE d.description LIKE 'multitenant: role of tenant % in database ' || $1",
            &[&database],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    in_batches(admin, drops);
}

/// Runs `statements` 500 to a transaction.
pub fn in_batches(client: &mut Client, statements: impl IntoIterator<Item = String>) {
    let statements: Vec<String> = statements.into_iter().collect();
    for chunk in statements.chunks(500) {
        client.batch_execute(&format!("BEGIN; {}; COMMIT", chunk.join("; "))).unwrap();
    }
}

pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn ratio(ours: Duration, baseline: Duration) -> String {
    format!("{:.2}x", ours.as_secs_f64() / baseline.as_secs_f64())
}

/// The memory of the extension's background workers (`multitenant run N` processes of this
/// machine's cluster), sampled from /proc while a run goes: the benchmark runs beside the
/// server, as root or postgres.
pub struct WorkerMemory {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sampler: std::thread::JoinHandle<MemoryPeak>,
}

/// The largest figures seen in any one worker, in kB, and how many workers were seen.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryPeak {
    pub rss_kb: u64,
    pub private_kb: u64,
    pub workers: usize,
}

impl std::fmt::Display for MemoryPeak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "peak RSS {:.1} MB, peak private {:.1} MB per worker ({} worker processes)",
            self.rss_kb as f64 / 1024.0,
            self.private_kb as f64 / 1024.0,
            self.workers
        )
    }
}

impl WorkerMemory {
    pub fn start() -> WorkerMemory {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = MemoryPeak::default();
            let mut seen = std::collections::BTreeSet::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                for pid in worker_pids() {
                    seen.insert(pid);
                    let (rss, private) = memory_of(pid);
                    peak.rss_kb = peak.rss_kb.max(rss);
                    peak.private_kb = peak.private_kb.max(private);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            peak.workers = seen.len();
            peak
        });
        WorkerMemory { stop, sampler }
    }

    pub fn finish(self) -> MemoryPeak {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.sampler.join().unwrap_or_default()
    }
}

fn worker_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("multitenant run"))
        })
        .collect()
}

/// (VmRSS, Private_Clean + Private_Dirty) in kB; zeros when the process has gone.
fn memory_of(pid: u32) -> (u64, u64) {
    let field = |text: &str, name: &str| -> u64 {
        text.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    (field(&status, "VmRSS:"), field(&rollup, "Private_Clean:") + field(&rollup, "Private_Dirty:"))
}
