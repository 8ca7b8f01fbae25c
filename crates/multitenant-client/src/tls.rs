//! TLS with rustls: `sslmode` and `sslrootcert` read from the connection string, as libpq
//! reads them.
//!
//! | `sslmode` | encrypts | verifies the certificate chain | verifies the host name |
//! | --- | --- | --- | --- |
//! | `disable` | no | | |
//! | `allow`, `prefer` (the default) | when the server offers TLS | only when root certificates are given | no |
//! | `require` | yes, or fails | only when root certificates are given | no |
//! | `verify-ca` | yes, or fails | yes (root certificates required) | no |
//! | `verify-full` | yes, or fails | yes (root certificates required) | yes |
//!
//! Root certificates: [`crate::Config::root_certificates`], or `sslrootcert=PATH` in the URL
//! (`sslrootcert=system` for the operating system's trust store). The certificate's names
//! are checked against the host the client connects to: a DNS name, or an IP address (then
//! the certificate needs that IP address in its subject alternative names).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as PgSslMode;
pub use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{RootCertificates, TlsConfig};
use crate::error::{Error, Result};

/// libpq's `sslmode` values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(Error::Config(format!(
                    "sslmode \"{other}\": expected disable, allow, prefer, require, verify-ca or verify-full"
                )))
            }
        })
    }

    /// What tokio-postgres is told: whether to try TLS, and whether it is required.
    fn negotiation(self) -> PgSslMode {
        match self {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Allow | SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        }
    }
}

/// A connection string with the TLS parameters tokio-postgres does not know taken out.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub pg_config: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    pub root_cert: Option<String>,
}

/// Parses a libpq URL or key=value string, taking `sslmode` (all six values) and
/// `sslrootcert` out of it.
pub(crate) fn parse(url: &str) -> Result<Parsed> {
    let (rest, ssl_mode, root_cert) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        split_url(url)?
    } else {
        split_key_values(url)?
    };
    let mut pg_config: tokio_postgres::Config =
        rest.parse().map_err(|e| Error::Config(format!("connection URL: {e}")))?;
    let ssl_mode = ssl_mode.as_deref().map(SslMode::parse).transpose()?.unwrap_or_default();
    pg_config.ssl_mode(ssl_mode.negotiation());
    Ok(Parsed { pg_config, ssl_mode, root_cert })
}

type Split = (String, Option<String>, Option<String>);

fn split_url(url: &str) -> Result<Split> {
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_string(), None, None)) };
    let (mut ssl_mode, mut root_cert, mut kept) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => ssl_mode = Some(percent_decode(value)?),
            "sslrootcert" => root_cert = Some(percent_decode(value)?),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    Ok((rest, ssl_mode, root_cert))
}

fn percent_decode(value: &str) -> Result<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            let byte = hex.ok_or_else(|| Error::Config(format!("connection URL: bad percent-encoding in {value}")))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::Config(format!("connection URL: {value} is not UTF-8")))
}

/// `key=value` pairs, values optionally single-quoted with backslash escapes (libpq's
/// syntax); the others are written back quoted.
fn split_key_values(conninfo: &str) -> Result<Split> {
    let (mut ssl_mode, mut root_cert, mut kept) = (None, None, Vec::new());
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(Error::Config(format!("connection string: missing = after {key}")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(Error::Config("connection string: unterminated quote".into())),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        match key.as_str() {
            "sslmode" => ssl_mode = Some(value),
            "sslrootcert" => root_cert = Some(value),
            _ => kept.push(format!("{key}='{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))),
        }
    }
    Ok((kept.join(" "), ssl_mode, root_cert))
}

/// The rustls connector for `ssl_mode`, trusting `config`'s root certificates (else the
/// URL's `sslrootcert`).
pub(crate) fn connector(ssl_mode: SslMode, url_root: Option<&str>, config: &TlsConfig) -> Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match (&config.root_certificates, url_root) {
        (Some(roots), _) => Some(load_roots(roots)?),
        (None, Some("system")) => Some(load_roots(&RootCertificates::System)?),
        (None, Some(path)) => Some(load_roots(&RootCertificates::File(path.into()))?),
        (None, None) => None,
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?;
    let verify_full = |roots: RootCertStore| -> Result<Arc<WebPkiServerVerifier>> {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| Error::Config(format!("TLS root certificates: {e}")))
    };
    let config = match (ssl_mode, roots) {
        (SslMode::Disable, _) => builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider))),
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(Error::Config(format!(
                "sslmode={} needs root certificates: sslrootcert=PATH (or sslrootcert=system) in the URL, or Config::root_certificates",
                if ssl_mode == SslMode::VerifyCa { "verify-ca" } else { "verify-full" }
            )))
        }
        (SslMode::VerifyFull, Some(roots)) => builder.with_webpki_verifier(verify_full(roots)?),
        // libpq: with root certificates, require (and prefer) check the chain, as verify-ca.
        (_, Some(roots)) => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(ChainOnly(verify_full(roots)?)))
        }
        (_, None) => builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider))),
    };
    Ok(MakeRustlsConnect::new(config.with_no_client_auth()))
}

fn load_roots(roots: &RootCertificates) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    let certificates: Vec<CertificateDer<'static>> = match roots {
        RootCertificates::System => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                return Err(Error::Config(format!("TLS: no system root certificates found ({:?})", found.errors)));
            }
            found.certs
        }
        RootCertificates::File(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| Error::Config(format!("TLS root certificates {}: {e}", path.display())))?;
            parse_pem(&pem, &path.display().to_string())?
        }
        RootCertificates::Pem(pem) => parse_pem(pem.as_bytes(), "Config::root_certificates")?,
    };
    let (added, _ignored) = store.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(Error::Config("TLS: no usable root certificate".into()));
    }
    Ok(store)
}

fn parse_pem(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("TLS root certificates {origin}: {e}")))?;
    if certificates.is_empty() {
        return Err(Error::Config(format!("TLS root certificates {origin}: no PEM certificate in it")));
    }
    Ok(certificates)
}

/// `prefer` and `require` without root certificates: encrypted, not authenticated (libpq's
/// behaviour). Handshake signatures are still checked.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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

/// `verify-ca`: the chain must lead to a trusted root; the names in the certificate are not
/// compared with the host.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
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

    #[test]
    fn sslmode_and_sslrootcert_come_out_of_urls() {
        let parsed =
            parse("postgresql://app@db.example.com:5433/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x")
                .unwrap();
        assert_eq!(parsed.ssl_mode, SslMode::VerifyFull);
        assert_eq!(parsed.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(parsed.pg_config.get_ssl_mode(), PgSslMode::Require);
        assert_eq!(parsed.pg_config.get_application_name(), Some("x"));
        assert_eq!(parsed.pg_config.get_dbname(), Some("app"));

        let parsed = parse("postgresql://app@localhost/app").unwrap();
        assert_eq!((parsed.ssl_mode, parsed.root_cert), (SslMode::Prefer, None));
        assert_eq!(parse("postgresql://h/d?sslmode=disable").unwrap().pg_config.get_ssl_mode(), PgSslMode::Disable);
        assert_eq!(parse("postgresql://h/d?sslmode=verify-ca").unwrap().ssl_mode, SslMode::VerifyCa);
        assert!(matches!(parse("postgresql://h/d?sslmode=sometimes"), Err(Error::Config(_))));
    }

    #[test]
    fn sslmode_and_sslrootcert_come_out_of_key_value_strings() {
        let parsed =
            parse("host=127.0.0.1 port = 5432 user=app dbname='my db' sslmode=verify-ca sslrootcert='/a b/ca.pem'")
                .unwrap();
        assert_eq!(parsed.ssl_mode, SslMode::VerifyCa);
        assert_eq!(parsed.root_cert.as_deref(), Some("/a b/ca.pem"));
        assert_eq!(parsed.pg_config.get_dbname(), Some("my db"));
        assert_eq!(parsed.pg_config.get_ports(), &[5432]);
        assert!(matches!(parse("host=x sslmode"), Err(Error::Config(_))));
    }

    #[test]
    fn verify_modes_need_roots_and_roots_must_parse() {
        let none = TlsConfig::default();
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require] {
            assert!(connector(mode, None, &none).is_ok(), "{mode:?}");
        }
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let error = connector(mode, None, &none).err().expect("needs roots");
            assert!(error.to_string().contains("root certificates"), "{error}");
        }
        let junk = TlsConfig { root_certificates: Some(RootCertificates::Pem("not a certificate".into())) };
        assert!(matches!(connector(SslMode::VerifyFull, None, &junk), Err(Error::Config(_))));
        let missing = connector(SslMode::VerifyCa, Some("/nonexistent/ca.pem"), &none).err().unwrap();
        assert!(missing.to_string().contains("/nonexistent/ca.pem"), "{missing}");
    }
}
