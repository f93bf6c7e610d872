//! TLS to Postgres with rustls. Modes follow libpq's `sslmode`:
//! - `disable`: plain TCP;
//! - `prefer` (default): TLS when the server offers it, certificate not checked;
//! - `require`: TLS or no connection, certificate not checked (what RDS's
//!   `rds.force_ssl` needs);
//! - `verify-full`: TLS, certificate chain checked against `DATABASE_SSLROOTCERT`
//!   (a PEM bundle, e.g. the RDS CA bundle) or the Mozilla roots, and host name.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;
use tokio_postgres::config::SslMode;
pub use tokio_postgres_rustls::MakeRustlsConnect;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

impl TlsMode {
    pub fn parse(s: &str) -> Option<TlsMode> {
        match s {
            "disable" => Some(TlsMode::Disable),
            "prefer" => Some(TlsMode::Prefer),
            "require" => Some(TlsMode::Require),
            "verify-full" | "verify-ca" => Some(TlsMode::VerifyFull),
            _ => None,
        }
    }

    /// The mode tokio-postgres negotiates with.
    pub fn ssl_mode(self) -> SslMode {
        match self {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyFull => SslMode::Require,
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An HTTP client builder whose TLS is rustls with the same crypto provider as
/// every other connection, checking certificates against the system's trust
/// store (registration endpoints, CloudFormation's pre-signed S3 URL).
pub fn http_client() -> Result<reqwest::ClientBuilder, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_platform_verifier()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth();
    Ok(reqwest::Client::builder().tls_backend_preconfigured(config))
}

/// The connector for a mode; `root_cert` is a PEM bundle for verify-full.
pub fn connector(mode: TlsMode, root_cert: Option<&str>) -> Result<MakeRustlsConnect, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let config = if mode == TlsMode::VerifyFull {
        let mut roots = RootCertStore::empty();
        match root_cert {
            Some(path) => {
                for cert in CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("DATABASE_SSLROOTCERT {path}: {e}"))?
                {
                    roots
                        .add(cert.map_err(|e| format!("DATABASE_SSLROOTCERT {path}: {e}"))?)
                        .map_err(|e| format!("DATABASE_SSLROOTCERT {path}: {e}"))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider())))
            .with_no_client_auth()
    };
    Ok(MakeRustlsConnect::new(config))
}

/// libpq's `require`: the channel is encrypted and the handshake signatures are
/// checked, but the certificate's issuer is not.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_like_libpq() {
        assert_eq!(TlsMode::parse("require"), Some(TlsMode::Require));
        assert_eq!(TlsMode::parse("verify-full"), Some(TlsMode::VerifyFull));
        assert_eq!(TlsMode::parse("allow"), None);
        assert_eq!(TlsMode::Require.ssl_mode(), SslMode::Require);
    }

    #[test]
    fn connectors_build_for_every_mode() {
        for mode in [
            TlsMode::Disable,
            TlsMode::Prefer,
            TlsMode::Require,
            TlsMode::VerifyFull,
        ] {
            assert!(connector(mode, None).is_ok());
        }
        assert!(connector(TlsMode::VerifyFull, Some("/nonexistent.pem")).is_err());
    }

    /// A listener that answers every connection with a plain HTTP 200.
    async fn plain_http_server() -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = socket.read(&mut buf).await;
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        address
    }

    #[tokio::test]
    async fn the_http_client_speaks_tls_to_https_urls() {
        let address = plain_http_server().await;
        let client = http_client().unwrap().build().unwrap();
        let plain = client.get(format!("http://{address}/")).send().await;
        assert_eq!(plain.unwrap().status(), 200);
        // Same server, https: the handshake must fail rather than fall back to plaintext.
        let tls = client.get(format!("https://{address}/")).send().await;
        assert!(tls.is_err(), "an https request was answered in plaintext");
    }
}
