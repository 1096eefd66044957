//! Which server certificate the client trusts.
//!
//! The agent talks to the PVE API of its own node, whose certificate chains to the
//! cluster CA in `/etc/pve/pve-root-ca.pem`. Trust is always configured explicitly:
//! the system roots (and `SSL_CERT_FILE` & co.) play no part, and certificate checks are
//! never switched off. An operator with a custom certificate can pin its SHA-256
//! fingerprint instead, as PVE itself does between nodes.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::error::ClientBuildError;

/// The cluster CA every PVE node certificate chains to.
pub const PVE_ROOT_CA: &str = "/etc/pve/pve-root-ca.pem";

/// How the API server's certificate is verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsTrust {
    /// Verify the chain and host name against the CA certificates in this PEM file.
    CaFile(PathBuf),
    /// The same, with the PEM already in memory.
    CaPem(Vec<u8>),
    /// Accept exactly the leaf certificate with this SHA-256 fingerprint (name and
    /// expiry are not checked: the pin names the one certificate). Handshake
    /// signatures are still verified, so only the holder of its key can answer.
    Fingerprint(CertFingerprint),
}

impl Default for TlsTrust {
    fn default() -> Self {
        TlsTrust::CaFile(PathBuf::from(PVE_ROOT_CA))
    }
}

/// SHA-256 of a DER certificate, shown as `pvenode cert info` shows it (`AB:CD:...`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertFingerprint([u8; 32]);

impl CertFingerprint {
    pub fn of_der(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        CertFingerprint(out)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for CertFingerprint {
    type Err = ClientBuildError;

    /// Accepts upper or lower case hex, with or without `:` separators.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ClientBuildError::Fingerprint(s.to_string());
        let hex: Vec<u8> = s.trim().bytes().filter(|b| *b != b':').collect();
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| bad())?;
            out[i] = u8::from_str_radix(text, 16).map_err(|_| bad())?;
        }
        Ok(CertFingerprint(out))
    }
}

impl fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|b| format!("{b:02X}")).collect();
        f.write_str(&parts.join(":"))
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertFingerprint({self})")
    }
}

/// The `ring` provider: it builds with a C compiler alone (aws-lc-rs needs cmake/nasm),
/// and is passed explicitly so nothing depends on a process-wide default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration for `trust`, handed to reqwest as a preconfigured backend.
pub(crate) fn client_config(trust: &TlsTrust) -> Result<rustls::ClientConfig, ClientBuildError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match trust {
        TlsTrust::CaFile(path) => {
            let pem = std::fs::read(path).map_err(|source| ClientBuildError::CaFile {
                path: path.clone(),
                source,
            })?;
            builder
                .with_root_certificates(roots(&pem, &path.display().to_string())?)
                .with_no_client_auth()
        }
        TlsTrust::CaPem(pem) => builder
            .with_root_certificates(roots(pem, "PEM data")?)
            .with_no_client_auth(),
        TlsTrust::Fingerprint(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCertVerifier {
                pin: *pin,
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// Every certificate of a PEM bundle as a trust anchor; an empty bundle is an error
/// (it would make every connection fail with a less helpful message).
fn roots(pem: &[u8], origin: &str) -> Result<RootCertStore, ClientBuildError> {
    let bad = |detail: String| ClientBuildError::BadCertificate {
        origin: origin.to_string(),
        detail,
    };
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        store.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if store.is_empty() {
        return Err(bad("no PEM certificate found".into()));
    }
    Ok(store)
}

/// Accepts the one leaf certificate whose SHA-256 is pinned.
#[derive(Debug)]
struct PinnedCertVerifier {
    pin: CertFingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

/// Carried inside the rustls error, so the log says which certificate was offered.
#[derive(Debug)]
struct FingerprintMismatch {
    expected: CertFingerprint,
    got: CertFingerprint,
}

impl fmt::Display for FingerprintMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server certificate fingerprint {} does not match the pinned {}",
            self.got, self.expected
        )
    }
}

impl std::error::Error for FingerprintMismatch {}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = CertFingerprint::of_der(end_entity.as_ref());
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            let mismatch = FingerprintMismatch {
                expected: self.pin,
                got,
            };
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(mismatch)),
            )))
        }
    }

    // The signature checks prove the peer holds the pinned certificate's private key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The rustls error anywhere in `err`'s chain (a refused certificate, a failed
/// handshake). hyper wraps it in `io::Error`s, whose `source()` skips the wrapped error
/// itself, so those are opened with `get_ref()`.
pub(crate) fn tls_cause<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let wrapped = err
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| tls_cause(inner));
    wrapped.or_else(|| err.source().and_then(tls_cause))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_round_trip() {
        let fp = CertFingerprint::of_der(b"not really a certificate");
        let text = fp.to_string();
        assert_eq!(text.len(), 32 * 3 - 1);
        assert_eq!(text.parse::<CertFingerprint>().unwrap(), fp);
        let bare = text.replace(':', "").to_lowercase();
        assert_eq!(bare.parse::<CertFingerprint>().unwrap(), fp);
        assert!("AB:CD".parse::<CertFingerprint>().is_err());
        assert!("zz".repeat(32).parse::<CertFingerprint>().is_err());
    }

    #[test]
    fn empty_bundle_is_an_error() {
        let err = client_config(&TlsTrust::CaPem(b"nothing here".to_vec())).unwrap_err();
        assert!(matches!(err, ClientBuildError::BadCertificate { .. }));
    }
}
