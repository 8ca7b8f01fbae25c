use multitenant_client::{Config, Error, TenantManager};
use std::time::Duration;

async fn probe(m: &TenantManager, t: &str, sql: &str) -> Result<String, String> {
    let mut db = m.db(t).await.map_err(|e| format!("{e:?}"))?;
    let r = db.query_one(sql, &[]).await.map_err(|e| format!("{e}"));
    drop(db);
    r.map(|r| r.get::<_, String>(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let url = "postgresql://app@127.0.0.1:54356/smoke";
    for ppt in [false, true] {
        let mut c = Config::new(url);
        c.pool_size = 1;
        if ppt {
            c = c.pool_per_tenant(5, Duration::from_secs(60));
        }
        let m = TenantManager::connect(c).await.unwrap();
        for _ in 0..3 {
            assert_eq!(
                probe(&m, "a", "SELECT name || current_user || current_setting('search_path') FROM marker")
                    .await
                    .unwrap(),
                "atenant_a\"tenant_a\""
            );
            assert_eq!(
                probe(&m, "b", "SELECT name || current_user FROM marker WHERE name = 'b'").await.unwrap(),
                "btenant_b"
            );
        }
        let e = probe(&m, "a", "SELECT name FROM tenant_b.marker").await.unwrap_err();
        assert!(e.contains("42501"), "{e}");
        assert!(probe(&m, "ghost", "SELECT 'x'").await.unwrap_err().contains("TenantNotFound"));
        assert!(probe(&m, "s", "SELECT 'x'").await.unwrap_err().contains("TenantNotActive"));
        let mut db = m.db("a").await.unwrap();
        db.batch_execute("SET ROLE tenant_b").await.unwrap();
        drop(db);
        assert_eq!(probe(&m, "a", "SELECT current_user::text").await.unwrap(), "tenant_a");
        let mut db = m.db("a").await.unwrap();
        db.batch_execute("SET ROLE tenant_b; SET search_path = tenant_b").await.unwrap();
        db.commit().await.unwrap();
        assert_eq!(probe(&m, "a", "SELECT current_user::text || name FROM marker").await.unwrap(), "tenant_aa");
        m.invalidate_all();
        assert_eq!(
            probe(&m, "b", "SELECT current_user::text || name FROM marker WHERE name = 'b'").await.unwrap(),
            "tenant_bb"
        );
        let mut sh = m.shared_db().await.unwrap();
        assert_eq!(
            sh.query_one("SELECT current_user::text || name FROM marker", &[]).await.unwrap().get::<_, String>(0),
            "appshared"
        );
        drop(sh);
        let db = m.db("b").await.unwrap();
        assert_eq!(db.execute_and_commit("INSERT INTO marker VALUES ('b2')", &[]).await.unwrap(), 1);
        println!("ppt={ppt} ok; metrics {:?}", m.metrics().checkouts);
    }
    let mut c = Config::new(url);
    c.schema_template = "org_{id}".into();
    assert!(matches!(TenantManager::connect(c).await, Err(Error::SettingsMismatch { .. })));
}
