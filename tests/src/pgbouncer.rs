//! A real PgBouncer (Debian's `pgbouncer`) in transaction mode in front of the test cluster,
//! run as the postgres user on a loopback port in 25361-25364, stopped when dropped.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::base_url;

/// Server connections PgBouncer keeps per database and user.
pub const SERVER_POOL_SIZE: usize = 12;

pub struct PgBouncer {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

/// Host and port of `MT_TEST_URL`'s cluster.
fn cluster_address() -> (String, u16) {
    let config: postgres::Config = format!("{}/postgres", base_url()).parse().expect("MT_TEST_URL");
    let host = match &config.get_hosts()[0] {
        postgres::config::Host::Tcp(host) => host.clone(),
        #[allow(unreachable_patterns)]
        _ => "127.0.0.1".into(),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PgBouncer {
    /// Starts PgBouncer for `users` (trust authentication; the user list is generated), in
    /// transaction mode, on the first free port of 25361-25364 (or `MT_PGBOUNCER_PORT`).
    pub fn start(users: &[&str]) -> PgBouncer {
        let (host, cluster_port) = cluster_address();
        let dir = std::env::temp_dir().join(format!("mt-pgbouncer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut userlist = std::fs::File::create(dir.join("userlist.txt")).unwrap();
        for user in users {
            writeln!(userlist, "\"{user}\" \"\"").unwrap();
        }
        let candidates: Vec<u16> = match std::env::var("MT_PGBOUNCER_PORT") {
            Ok(port) => vec![port.parse().expect("MT_PGBOUNCER_PORT")],
            Err(_) => (25361..=25364).collect(),
        };
        let port = candidates
            .into_iter()
            .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
            .expect("a free port for PgBouncer in 25361-25364");
        let ini = dir.join("pgbouncer.ini");
        // Started as root, PgBouncer must be told the user to change to (it refuses to run as
        // root); it does once it has read its files and bound its port.
        let run_as = if running_as_root() { "user = postgres\n" } else { "" };
        std::fs::write(
            &ini,
            format!(
                "[databases]\n\
                 * = host={host} port={cluster_port}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 {run_as}\
                 auth_type = trust\n\
                 auth_file = {}\n\
                 pool_mode = transaction\n\
                 default_pool_size = {SERVER_POOL_SIZE}\n\
                 max_client_conn = 2000\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 server_reset_query =\n\
                 log_connections = 0\n\
                 log_disconnections = 0\n",
                dir.join("userlist.txt").display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("pgbouncer.log")).unwrap();
        let child = Command::new("pgbouncer")
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("pgbouncer (Debian package `pgbouncer`, installed by scripts/prereqs.sh)");
        let bouncer = PgBouncer { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "PgBouncer did not start: {}", bouncer.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        bouncer
    }

    /// A URL through PgBouncer to `database` as `user`.
    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgresql://{user}@127.0.0.1:{}/{database}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    /// Named prepared statements left on PgBouncer's server connections for `database` and
    /// `user`: as many clients as the pool has server connections each open a transaction at
    /// once (so each holds a server connection of its own) and count `pg_prepared_statements`.
    /// Returns (server connections seen, statements found).
    pub fn leftover_statements(&self, user: &str, database: &str) -> (usize, i64) {
        let url = self.url(user, database);
        let barrier = std::sync::Barrier::new(SERVER_POOL_SIZE);
        let answers: Vec<(String, i64)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..SERVER_POOL_SIZE)
                .map(|_| {
                    scope.spawn(|| {
                        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("through PgBouncer");
                        let mut tx = client.transaction().unwrap();
                        let messages =
                            tx.simple_query("SELECT pg_backend_pid(), count(*) FROM pg_prepared_statements").unwrap();
                        barrier.wait(); // every server connection is held by one of us
                        tx.commit().unwrap();
                        messages
                            .into_iter()
                            .find_map(|m| match m {
                                postgres::SimpleQueryMessage::Row(row) => {
                                    Some((row.get(0).unwrap().to_string(), row.get(1).unwrap().parse().unwrap()))
                                }
                                _ => None,
                            })
                            .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let pids: std::collections::BTreeSet<&String> = answers.iter().map(|(pid, _)| pid).collect();
        (pids.len(), answers.iter().map(|(_, n)| n).sum())
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // SIGTERM: PgBouncer shuts down at once; SIGKILL if it lingers.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
