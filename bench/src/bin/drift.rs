//! Drift over many tenants: the set-based views against a per-tenant loop, in one run.
//!
//! N tenants migrated with `examples/drizzle/` (22 migrations, 15 tables, about 170
//! objects each), one of them then altered by hand. Timed:
//! - `SELECT * FROM mt.drift_summary` and `SELECT * FROM mt.drift_report`: one query over
//!   the catalogs for all tenants, fingerprints first;
//! - the baseline: what a client does without them, `mt.tenant_drift(tenant)` once per
//!   tenant (a round trip and a catalog read per tenant), over the same tenants.
//!
//! Usage: drift [N ...]       (default 1000)

use std::path::Path;

use multitenant_bench::{fresh_database, ratio, secs, timed};

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("N")).collect();
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/drizzle").canonicalize().unwrap();
    for n in if sizes.is_empty() { vec![1000] } else { sizes } {
        let db = format!("bench_drift_{n}");
        let mut client = fresh_database(&db);
        // The server reads the folder itself: give it a copy it can read.
        let copy = format!("/tmp/mt_bench_drizzle_{}", std::process::id());
        std::process::Command::new("cp").args(["-r", folder.to_str().unwrap(), &copy]).status().unwrap();
        std::process::Command::new("chmod").args(["-R", "a+rX", &copy]).status().unwrap();
        client.execute("SELECT count(*) FROM mt.load_migrations($1)", &[&copy]).unwrap();
        client
            .execute(
                "SELECT count(*) FROM (SELECT mt.create_tenant('t' || g, migrate => false) FROM generate_series(1, $1) g) s",
                &[&(n as i32)],
            )
            .unwrap();
        let (_, setup) = timed(|| client.query("SELECT * FROM mt.migrate_all()", &[]).unwrap());
        client
            .batch_execute(
                "DROP INDEX tenant_t1.tasks_open_idx; ALTER TABLE tenant_t1.users ALTER COLUMN name TYPE varchar(100)",
            )
            .unwrap();
        client.batch_execute("ANALYZE").unwrap();
        client.batch_execute("CHECKPOINT").unwrap();

        let (drifted, summary) = timed(|| {
            client
                .query_one("SELECT count(*) FILTER (WHERE has_drift) FROM mt.drift_summary", &[])
                .unwrap()
                .get::<_, i64>(0)
        });
        let (differences, report) =
            timed(|| client.query_one("SELECT count(*) FROM mt.drift_report", &[]).unwrap().get::<_, i64>(0));
        assert_eq!((drifted, differences), (1, 2));
        // The loop costs tens of ms per tenant: above 1,000 tenants it runs on the first 1,000.
        let (looped, baseline) = timed(|| {
            let tenants = client.query("SELECT tenant_id FROM mt.tenants ORDER BY tenant_id LIMIT 1000", &[]).unwrap();
            tenants
                .iter()
                .map(|row| {
                    let id: String = row.get(0);
                    client.query_one("SELECT count(*) FROM mt.tenant_drift($1)", &[&id]).unwrap().get::<_, i64>(0)
                })
                .sum::<i64>()
        });
        assert_eq!(looped, 2, "t1 is among the first 1,000");
        std::fs::remove_dir_all(&copy).ok();
        println!("N = {n} tenants x 22 migrations (migrated in {}), 1 tenant altered (2 differences)", secs(setup));
        let looped_over = n.min(1000);
        println!("  baseline, mt.tenant_drift per tenant: {} for {looped_over} tenants", secs(baseline));
        if looped_over == n {
            println!(
                "  mt.drift_summary:                     {}  = {} of the baseline",
                secs(summary),
                ratio(summary, baseline)
            );
            println!(
                "  mt.drift_report:                      {}  = {} of the baseline",
                secs(report),
                ratio(report, baseline)
            );
        } else {
            println!("  mt.drift_summary:                     {}  (all {n} tenants)", secs(summary));
            println!("  mt.drift_report:                      {}  (all {n} tenants)", secs(report));
        }
        drop(client);
        let mut admin = multitenant_bench::connect("postgres");
        admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
    }
}
