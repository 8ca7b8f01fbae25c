//! Where to connect and how: `--database-url` / `DATABASE_URL` (a `postgres://` URL or a
//! libpq `key=value` string), else the libpq variables `PGHOST PGPORT PGUSER PGPASSWORD
//! PGDATABASE`. TLS follows `sslmode` (`disable`, `prefer` (the default), `require`,
//! `verify-ca`, `verify-full`) and `sslrootcert`, as libpq reads them, from the URL or
//! `PGSSLMODE` / `PGSSLROOTCERT`. TLS is rustls (through tokio-postgres-rustls).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::{Client, Config, NoTls};

use crate::exit::{CliError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(value: &str) -> Result<SslMode> {
        Ok(match value {
            "disable" => SslMode::Disable,
            // libpq's allow tries without TLS first; without TLS is what it gets here too
            // when the server has none, and TLS otherwise.
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(CliError::bad_input(format!(
                    "sslmode \"{other}\" is invalid: use disable, prefer, require, verify-ca or verify-full"
                )))
            }
        })
    }
}

/// A parsed connection target: the tokio-postgres config plus what it does not know.
#[derive(Debug, Clone)]
pub struct ConnSpec {
    pub config: Config,
    pub ssl_mode: SslMode,
    pub ssl_root_cert: Option<String>,
}

/// The environment, injectable for tests.
pub type Env = BTreeMap<String, String>;

pub fn process_env() -> Env {
    std::env::vars().collect()
}

/// Builds the target from the URL (if any) and the environment.
pub fn spec(database_url: Option<&str>, env: &Env) -> Result<ConnSpec> {
    let var = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    let mut extra = BTreeMap::new();
    let mut config = match database_url.filter(|u| !u.trim().is_empty()) {
        Some(url) => {
            let (cleaned, taken) = take_params(url, &["sslmode", "sslrootcert"])?;
            extra = taken;
            let config: Config =
                cleaned.parse().map_err(|e| CliError::bad_input(format!("the database URL is invalid: {e}")))?;
            config
        }
        None => {
            let mut config = Config::new();
            config.host(var("PGHOST").unwrap_or_else(|| "localhost".to_string()));
            if let Some(port) = var("PGPORT") {
                config.port(port.parse().map_err(|_| CliError::bad_input(format!("PGPORT \"{port}\" is not a port")))?);
            }
            if let Some(db) = var("PGDATABASE") {
                config.dbname(db);
            }
            config
        }
    };
    if config.get_hosts().is_empty() {
        config.host(var("PGHOST").unwrap_or_else(|| "localhost".to_string()));
    }
    if config.get_user().is_none() {
        if let Some(user) = var("PGUSER").or_else(|| var("USER")) {
            config.user(user);
        }
    }
    if config.get_password().is_none() {
        if let Some(password) = var("PGPASSWORD") {
            config.password(password);
        }
    }
    if config.get_application_name().is_none() {
        config.application_name(var("PGAPPNAME").unwrap_or_else(|| "mt".to_string()));
    }
    if config.get_connect_timeout().is_none() {
        let secs = var("PGCONNECT_TIMEOUT").and_then(|s| s.parse::<u64>().ok()).unwrap_or(10);
        config.connect_timeout(Duration::from_secs(secs.max(1)));
    }
    let ssl_mode = match extra.get("sslmode").cloned().or_else(|| var("PGSSLMODE")) {
        Some(mode) => SslMode::parse(&mode)?,
        None => SslMode::Prefer,
    };
    let ssl_root_cert = extra.get("sslrootcert").cloned().or_else(|| var("PGSSLROOTCERT"));
    config.ssl_mode(match ssl_mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        _ => PgSslMode::Require,
    });
    Ok(ConnSpec { config, ssl_mode, ssl_root_cert })
}

/// Removes `keys` from a URL's query or a `key=value` string, returning what they held.
/// tokio-postgres refuses options it does not know (`sslrootcert`) and `sslmode`s beyond
/// `require`; both are handled here.
pub fn take_params(conninfo: &str, keys: &[&str]) -> Result<(String, BTreeMap<String, String>)> {
    let mut taken = BTreeMap::new();
    if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        let Some((base, query)) = conninfo.split_once('?') else { return Ok((conninfo.to_string(), taken)) };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if keys.contains(&k) {
                taken.insert(k.to_string(), percent_decode(v)?);
            } else {
                kept.push(pair);
            }
        }
        let cleaned = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
        return Ok((cleaned, taken));
    }
    // key = value pairs, values optionally single-quoted with \' and \\ escapes.
    let mut kept = Vec::new();
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(CliError::bad_input(format!("the connection string is invalid: \"{key}\" has no value")));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut raw = String::new();
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            raw.push(chars.next().unwrap_or('\''));
            let mut closed = false;
            while let Some(c) = chars.next() {
                raw.push(c);
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            raw.push(n);
                            value.push(n);
                        }
                    }
                    '\'' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(CliError::bad_input("the connection string is invalid: unterminated quoted value"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                raw.push(c);
                value.push(c);
                chars.next();
            }
        }
        if keys.contains(&key.as_str()) {
            taken.insert(key, value);
        } else {
            kept.push(format!("{key}={raw}"));
        }
    }
    Ok((kept.join(" "), taken))
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => return Err(CliError::bad_input(format!("the database URL is invalid: bad escape in \"{s}\""))),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| CliError::bad_input(format!("the database URL is invalid: \"{s}\" is not UTF-8")))
}

/// A connection, its backend pid, and the task that drives it (notices go to stderr).
pub struct Connection {
    pub client: Client,
    pub pid: i32,
}

pub async fn connect(spec: &ConnSpec) -> Result<Connection> {
    let client = match spec.ssl_mode {
        SslMode::Disable => {
            let (client, connection) = spec.config.connect(NoTls).await.map_err(connect_error)?;
            tokio::spawn(drive(connection));
            client
        }
        mode => {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(mode, spec.ssl_root_cert.as_deref())?);
            let (client, connection) = spec.config.connect(tls).await.map_err(connect_error)?;
            tokio::spawn(drive(connection));
            client
        }
    };
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    Ok(Connection { client, pid })
}

fn connect_error(e: tokio_postgres::Error) -> CliError {
    let mut err = CliError::from(e);
    if err.sqlstate.is_none() || err.code == crate::exit::ExitCode::Connection {
        err.code = crate::exit::ExitCode::Connection;
    }
    err.context("cannot connect")
}

/// Polls the connection, printing the server's notices and warnings to stderr.
async fn drive<S, T>(mut connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(tokio_postgres::AsyncMessage::Notice(notice))) => {
                if !matches!(notice.severity(), "DEBUG" | "LOG" | "INFO" | "NOTICE") {
                    eprintln!("{}: {}", notice.severity(), notice.message());
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client configuration for `mode`: `prefer` and `require` encrypt without
/// checking the certificate (as libpq does) unless `sslrootcert` is given, which makes
/// `require` check the chain like `verify-ca`; `verify-ca` checks the chain against the root
/// certificates; `verify-full` checks the host name too. Roots: the `sslrootcert` file (PEM),
/// or `~/.postgresql/root.crt`, or `sslrootcert=system` / neither: the system's store
/// (falling back to the Mozilla roots of webpki-roots when it is empty).
pub fn tls_config(mode: SslMode, root_cert: Option<&str>) -> Result<ClientConfig> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::connection(format!("TLS: {e}")))?;
    let verify = match mode {
        SslMode::Disable => unreachable!("no TLS with sslmode=disable"),
        SslMode::Prefer | SslMode::Require if root_cert.is_none_or(|r| r == "system") => None,
        SslMode::Prefer | SslMode::Require | SslMode::VerifyCa => Some(false),
        SslMode::VerifyFull => Some(true),
    };
    let config = match verify {
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth(),
        Some(check_name) => {
            let roots = Arc::new(root_store(root_cert)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| CliError::connection(format!("TLS: {e}")))?;
            if check_name {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            } else {
                builder.dangerous().with_custom_certificate_verifier(Arc::new(ChainOnly(webpki))).with_no_client_auth()
            }
        }
    };
    Ok(config)
}

fn root_store(root_cert: Option<&str>) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    let file = match root_cert {
        Some("system") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".postgresql/root.crt")).filter(|p| p.is_file()),
    };
    match file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(&path)
                .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| CliError::connection(format!("sslrootcert {}: {e}", path.display())))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(CliError::connection(format!("sslrootcert {} holds no certificate", path.display())));
            }
        }
        None => {
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if store.is_empty() {
                store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
        }
    }
    Ok(store)
}

/// `sslmode=prefer|require` without a root certificate: encrypted, the certificate not
/// checked (libpq's behaviour). Handshake signatures are still verified.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_url_wins_and_pg_variables_fill_the_gaps() {
        let s = spec(
            Some("postgres://app@db.example.com:6543/prod?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x"),
            &env(&[("PGPASSWORD", "secret"), ("PGHOST", "ignored")]),
        )
        .unwrap();
        assert_eq!(s.ssl_mode, SslMode::VerifyFull);
        assert_eq!(s.ssl_root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(s.config.get_user(), Some("app"));
        assert_eq!(s.config.get_dbname(), Some("prod"));
        assert_eq!(s.config.get_ports(), &[6543]);
        assert_eq!(s.config.get_password(), Some(&b"secret"[..]));
        assert_eq!(s.config.get_application_name(), Some("x"));
        assert_eq!(s.config.get_ssl_mode(), PgSslMode::Require);
        assert!(matches!(&s.config.get_hosts()[0], tokio_postgres::config::Host::Tcp(h) if h == "db.example.com"));
    }

    #[test]
    fn pg_variables_alone() {
        let s = spec(
            None,
            &env(&[
                ("PGHOST", "127.0.0.1"),
                ("PGPORT", "25360"),
                ("PGUSER", "postgres"),
                ("PGDATABASE", "app"),
                ("PGSSLMODE", "disable"),
            ]),
        )
        .unwrap();
        assert_eq!(s.ssl_mode, SslMode::Disable);
        assert_eq!(s.config.get_ports(), &[25360]);
        assert_eq!(s.config.get_user(), Some("postgres"));
        assert_eq!(s.config.get_dbname(), Some("app"));
        assert_eq!(s.config.get_application_name(), Some("mt"));
        let defaults = spec(None, &env(&[])).unwrap();
        assert_eq!(defaults.ssl_mode, SslMode::Prefer);
        assert!(matches!(&defaults.config.get_hosts()[0], tokio_postgres::config::Host::Tcp(h) if h == "localhost"));
        let bad = spec(None, &env(&[("PGPORT", "x")])).unwrap_err();
        assert_eq!(bad.code, crate::exit::ExitCode::BadInput);
    }

    #[test]
    fn key_value_strings_are_understood() {
        let (cleaned, taken) = take_params(
            "host=localhost  port=5432 sslmode=verify-ca sslrootcert='/tmp/my ca.pem' password='it\\'s'",
            &["sslmode", "sslrootcert"],
        )
        .unwrap();
        assert_eq!(taken["sslmode"], "verify-ca");
        assert_eq!(taken["sslrootcert"], "/tmp/my ca.pem");
        assert!(cleaned.starts_with("host=localhost port=5432 password="), "{cleaned}");
        let s = spec(Some("host=127.0.0.1 dbname=x sslmode=require"), &env(&[])).unwrap();
        assert_eq!(s.ssl_mode, SslMode::Require);
        assert_eq!(s.config.get_dbname(), Some("x"));
        assert!(take_params("host", &[]).is_err());
        assert!(take_params("password='open", &[]).is_err());
    }

    #[test]
    fn sslmodes() {
        for (text, mode) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Prefer),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            assert_eq!(SslMode::parse(text).unwrap(), mode);
        }
        let err = spec(Some("postgres://h/db?sslmode=always"), &env(&[])).unwrap_err();
        assert_eq!(err.code, crate::exit::ExitCode::BadInput);
        assert!(err.message.contains("sslmode \"always\""), "{err}");
        assert!(spec(Some("postgres://h/db?sslmode=verify-full"), &env(&[])).is_ok());
        assert!(spec(Some("postgres://h/db?bogus=1"), &env(&[])).is_err());
    }

    #[test]
    fn tls_configs_build() {
        tls_config(SslMode::Prefer, None).unwrap();
        tls_config(SslMode::Require, None).unwrap();
        tls_config(SslMode::VerifyFull, Some("system")).unwrap();
        let missing = tls_config(SslMode::VerifyCa, Some("/nonexistent/ca.pem")).unwrap_err();
        assert_eq!(missing.code, crate::exit::ExitCode::Connection);
        assert!(missing.message.contains("/nonexistent/ca.pem"), "{missing}");
    }
}
