//! TLS against a cluster of its own started with `ssl = on` and a certificate the test makes
//! with openssl (a CA, and a server certificate for the IP address 127.0.0.1 only): every
//! `sslmode`, root certificates from the URL and from `Config`, and the refusals: a wrong CA,
//! a host name the certificate does not name, `require` against a server without TLS.
//!
//! The cluster listens on 127.0.0.1:25368, or the next free port up to 25375 (`MT_TLS_PORT`
//! chooses one), and is stopped at the end.

use std::path::{Path, PathBuf};
use std::process::Command;

use multitenant_client::{Config, Error, RootCertificates, TenantManager};
use multitenant_integration::{connect, fresh_database};

const CLUSTER: &str = "tls";

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster.sh")
}

fn cluster(args: &[&str]) -> String {
    let output = Command::new(scripts()).args(args).output().unwrap();
    assert!(output.status.success(), "cluster.sh {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// Stops the cluster and removes the certificates however the test ends.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(scripts()).args(["stop", CLUSTER]).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A CA named `name` in `dir`: `name.crt`, `name.key`.
fn certificate_authority(dir: &Path, name: &str) {
    let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "2",
            "-subj",
            &format!("/CN=multitenant test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// `server.crt` and `server.key`, signed by `ca`, valid for the IP address 127.0.0.1 only.
fn server_certificate(dir: &Path, ca: &str) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

/// The first port of `range` nothing listens on (a leftover cluster of an interrupted run).
fn free_port(range: std::ops::RangeInclusive<u16>) -> u16 {
    range
        .clone()
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .unwrap_or_else(|| panic!("no free port in {range:?}"))
}

/// Starts the cluster with `ssl = on` and the generated certificate; returns its base URL
/// with `localhost` as the host, and one with `127.0.0.1`.
fn tls_cluster(certs: &Path, port: &str) -> (String, String) {
    let data = PathBuf::from(cluster(&["dir", CLUSTER]));
    cluster(&["start", CLUSTER, port]);
    for file in ["server.crt", "server.key"] {
        std::fs::copy(certs.join(file), data.join(file)).unwrap();
        Command::new("chown").arg("postgres:").arg(data.join(file)).status().unwrap();
    }
    Command::new("chmod").arg("600").arg(data.join("server.key")).status().unwrap();
    let conf = data.join("postgresql.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    if !text.contains("\nssl = on") {
        std::fs::write(&conf, text + "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
            .unwrap();
    }
    // A restart loads the certificate made by this run.
    cluster(&["stop", CLUSTER]);
    cluster(&["start", CLUSTER, port]);
    (format!("postgresql://postgres@localhost:{port}"), format!("postgresql://postgres@127.0.0.1:{port}"))
}

/// Whether the checkout's connection is encrypted (`pg_stat_ssl`).
async fn encrypted(config: Config) -> Result<bool, Error> {
    let manager = TenantManager::connect(config).await?;
    let mut db = manager.shared_db().await?;
    let row = db.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await?;
    db.commit().await?;
    manager.dispose();
    Ok(row.get(0))
}

fn run<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(future)
}

#[test]
fn sslmodes_root_certificates_and_refusals() {
    let port = std::env::var("MT_TLS_PORT").unwrap_or_else(|_| free_port(25368..=25375).to_string());
    let certs = std::env::temp_dir().join(format!("mt-tls-{}", std::process::id()));
    std::fs::create_dir_all(&certs).unwrap();
    let _cleanup = Cleanup(certs.clone());
    certificate_authority(&certs, "ca");
    certificate_authority(&certs, "other_ca");
    server_certificate(&certs, "ca");
    let (by_name, by_ip) = tls_cluster(&certs, &port);
    {
        let mut admin = connect(&format!("{by_ip}/postgres?sslmode=disable"));
        admin.batch_execute("DROP DATABASE IF EXISTS tls_client WITH (FORCE)").unwrap();
        admin.batch_execute("CREATE DATABASE tls_client").unwrap();
    }
    connect(&format!("{by_ip}/tls_client?sslmode=disable"))
        .batch_execute("SET client_min_messages = warning; CREATE EXTENSION multitenant")
        .unwrap();
    let ca = certs.join("ca.crt");
    let other_ca = certs.join("other_ca.crt");
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let url = |base: &str, query: &str| format!("{base}/tls_client{query}");
    let plain_server = fresh_database("tls_plain"); // on the integration cluster: no TLS

    run(async move {
        // Encryption as sslmode says; no verification without root certificates.
        assert!(!encrypted(Config::new(url(&by_ip, "?sslmode=disable"))).await.unwrap());
        assert!(encrypted(Config::new(url(&by_ip, ""))).await.unwrap(), "prefer is the default");
        assert!(encrypted(Config::new(url(&by_ip, "?sslmode=prefer"))).await.unwrap());
        assert!(encrypted(Config::new(url(&by_name, "?sslmode=require"))).await.unwrap());

        // verify-ca: the chain, not the name (the certificate names 127.0.0.1, not localhost).
        let root = format!("&sslrootcert={}", ca.display());
        assert!(encrypted(Config::new(url(&by_name, &format!("?sslmode=verify-ca{root}")))).await.unwrap());
        // verify-full: the chain and the name; roots from the URL, a file or PEM text.
        assert!(encrypted(Config::new(url(&by_ip, &format!("?sslmode=verify-full{root}")))).await.unwrap());
        let from_file =
            Config::new(url(&by_ip, "?sslmode=verify-full")).root_certificates(RootCertificates::File(ca.clone()));
        assert!(encrypted(from_file).await.unwrap());
        let from_pem =
            Config::new(url(&by_ip, "?sslmode=verify-full")).root_certificates(RootCertificates::Pem(ca_pem.clone()));
        assert!(encrypted(from_pem).await.unwrap());

        // Refused: a name the certificate does not hold, another CA (also for require, which
        // checks the chain when given roots, as libpq does), no roots for verify modes.
        let refused = |config: Config| async move {
            let error = encrypted(config).await.expect_err("refused");
            assert!(error.to_string().contains("certificate"), "{error}");
        };
        refused(Config::new(url(&by_name, &format!("?sslmode=verify-full{root}")))).await;
        let other = format!("&sslrootcert={}", other_ca.display());
        refused(Config::new(url(&by_ip, &format!("?sslmode=verify-full{other}")))).await;
        refused(Config::new(url(&by_ip, &format!("?sslmode=verify-ca{other}")))).await;
        refused(Config::new(url(&by_ip, &format!("?sslmode=require{other}")))).await;
        match TenantManager::new(Config::new(url(&by_ip, "?sslmode=verify-full"))) {
            Err(Error::Config(message)) => assert!(message.contains("sslrootcert"), "{message}"),
            other => panic!("{:?}", other.err()),
        }

        // A server without TLS: require fails, prefer falls back to plain.
        let no_tls = |mode: &str| {
            let mut config = Config::new(format!("{plain_server}?sslmode={mode}"));
            config.checkout_timeout = std::time::Duration::from_secs(5);
            config
        };
        let manager = TenantManager::new(no_tls("require")).unwrap();
        let error = manager.shared_db().await.err().expect("require needs TLS");
        assert!(error.to_string().to_lowercase().contains("tls"), "{error}");
        let manager = TenantManager::new(no_tls("prefer")).unwrap();
        let mut db = manager.shared_db().await.unwrap();
        let ssl: bool =
            db.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0);
        assert!(!ssl);
        db.commit().await.unwrap();
    });
}
