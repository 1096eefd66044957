//! Which HTTPS git server the agent trusts.
//!
//! Without a CA file, the system's CA store (what git and curl trust: a forge with a
//! public certificate). With one (`repo.caFile`, `--git-ca-file`: a self-hosted forge
//! behind a private CA, as the PVE API is behind the cluster's), exactly the certificates
//! in that file, and the system store plays no part. Either way the check is rustls's
//! WebPKI verifier during the handshake, with the intermediates the server sends, so the
//! file may hold the root as `git` and `curl` expect.

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The CA certificates an HTTPS remote is verified against.
#[derive(Clone)]
pub(crate) enum Trust {
    /// The system's store, read when the first connection is made.
    System,
    /// Every certificate of this PEM file.
    CaFile {
        roots: Arc<RootCertStore>,
        file: PathBuf,
    },
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trust::System => f.write_str("Trust::System"),
            Trust::CaFile { file, .. } => write!(f, "Trust::CaFile({})", file.display()),
        }
    }
}

impl Trust {
    /// Every certificate of the PEM file `path` as a trust anchor; the message says what
    /// is wrong with the file (an empty bundle would refuse every server less clearly).
    pub fn load(path: &Path) -> Result<Self, String> {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
        let bad = |detail: String| format!("CA file {}: {detail}", path.display());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad("no PEM certificate found".into()));
        }
        Ok(Trust::CaFile {
            roots: Arc::new(roots),
            file: path.to_path_buf(),
        })
    }

    /// The rustls configuration that trusts exactly this. A system store that cannot be
    /// read (no `ca-certificates`) is not an error here: every server is then refused at
    /// the handshake, and [`Trust::explain`] says why.
    pub fn client_config(&self) -> ClientConfig {
        // The `ring` provider, passed explicitly as the PVE client does: nothing depends
        // on a process-wide default.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions");
        match self {
            Trust::CaFile { roots, .. } => builder
                .with_root_certificates(roots.clone())
                .with_no_client_auth(),
            Trust::System => match system_verifier(provider) {
                Ok(verifier) => builder
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth(),
                Err(e) => {
                    tracing::warn!(error = %e, "the system's CA store cannot be read: every HTTPS git server will be refused");
                    builder
                        .with_root_certificates(RootCertStore::empty())
                        .with_no_client_auth()
                }
            },
        }
    }

    /// `error` (a refused certificate) with what it was checked against, and what to do
    /// about a private CA.
    pub fn explain(&self, error: &rustls::Error) -> String {
        match self {
            Trust::CaFile { file, .. } => format!(
                "{error} (checked against {}, which must hold the CA that issued the \
                 server's certificate)",
                file.display()
            ),
            Trust::System => format!(
                "{error} (checked against the system's CA store; for a server behind a \
                 private CA, configure that CA's certificate: repo.caFile, --git-ca-file)"
            ),
        }
    }
}

/// The system store's verifier (reqwest's own choice for rustls, so it is linked anyway).
fn system_verifier(
    provider: Arc<CryptoProvider>,
) -> Result<Arc<rustls_platform_verifier::Verifier>, rustls::Error> {
    rustls_platform_verifier::Verifier::new(provider).map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let err = Trust::load(&empty).unwrap_err();
        assert!(err.contains("no PEM certificate found"), "{err}");
        let err = Trust::load(&dir.path().join("missing.pem")).unwrap_err();
        assert!(err.contains("cannot read CA file"), "{err}");
    }
}
