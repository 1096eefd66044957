//! The push webhook receiver: a forge's push notification makes the daemon poll now
//! instead of at its next interval. Off unless `--webhook-listen` is given.
//!
//! Only verified requests count: GitHub (`X-Hub-Signature-256: sha256=<hex>`), Gitea and
//! Forgejo (`X-Gitea-Signature` / `X-Forgejo-Signature: <hex>`), each an HMAC-SHA256 of
//! the body with the shared secret, and GitLab (`X-Gitlab-Token: <secret>`). Anything
//! else is answered 401 and logged. The payload itself is not trusted for anything: a
//! verified request only triggers the same poll the timer would.

use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Push payloads are small; anything larger is refused before it is read whole.
const MAX_BODY: usize = 1 << 20;

/// Whether `headers` carry a valid signature of `body` made with `secret`.
pub fn verify(headers: &hyper::HeaderMap, body: &[u8], secret: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(sig) = header("x-hub-signature-256").and_then(|v| v.strip_prefix("sha256=")) {
        return hmac_matches(sig, body, secret);
    }
    if let Some(sig) = header("x-gitea-signature").or_else(|| header("x-forgejo-signature")) {
        return hmac_matches(sig, body, secret);
    }
    if let Some(token) = header("x-gitlab-token") {
        // Compared through an HMAC so the comparison takes the same time for any token.
        let mac = |t: &[u8]| {
            let mut m = Hmac::<Sha256>::new_from_slice(b"pve-gitops").expect("any key");
            m.update(t);
            m.finalize().into_bytes()
        };
        return mac(token.as_bytes()) == mac(secret);
    }
    false
}

fn hmac_matches(hex_signature: &str, body: &[u8], secret: &[u8]) -> bool {
    let Some(signature) = decode_hex(hex_signature.trim()) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Listen on `addr`; each verified POST sends on `wake`. Returns the bound address (a
/// port of 0 picks a free one) once listening.
pub async fn serve(
    addr: SocketAddr,
    secret: Vec<u8>,
    wake: mpsc::UnboundedSender<()>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let secret: Arc<[u8]> = secret.into();
    crate::listen::spawn(
        listener,
        crate::listen::Limits::default(),
        move |req, peer| handle(req, peer, secret.clone(), wake.clone()),
    );
    tracing::info!(%bound, "webhook receiver listening");
    Ok(bound)
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    peer: SocketAddr,
    secret: Arc<[u8]>,
    wake: mpsc::UnboundedSender<()>,
) -> Response<Full<Bytes>> {
    let answer = |status: StatusCode, text: &'static str| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(text.as_bytes())))
            .expect("static response")
    };
    if req.method() != hyper::Method::POST {
        return answer(StatusCode::METHOD_NOT_ALLOWED, "POST a push event\n");
    }
    let headers = req.headers().clone();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return answer(StatusCode::PAYLOAD_TOO_LARGE, "payload too large\n"),
    };
    if !verify(&headers, &body, &secret) {
        tracing::warn!(%peer, "webhook refused: missing or wrong signature");
        return answer(StatusCode::UNAUTHORIZED, "signature missing or wrong\n");
    }
    tracing::info!(%peer, "webhook: push notified, polling now");
    let _ = wake.send(());
    answer(StatusCode::ACCEPTED, "polling\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> hyper::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    hyper::header::HeaderName::from_static(k),
                    v.parse().unwrap(),
                )
            })
            .collect()
    }

    fn sign(body: &[u8], secret: &[u8]) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        m.update(body);
        m.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn each_forges_signature_is_checked() {
        let (body, secret) = (br#"{"ref":"refs/heads/main"}"#, b"s3cret");
        let good = sign(body, secret);
        let bad = sign(body, b"other");
        let cases: &[(&[(&'static str, &str)], bool)] = &[
            (&[("x-hub-signature-256", &format!("sha256={good}"))], true),
            (&[("x-hub-signature-256", &format!("sha256={bad}"))], false),
            (&[("x-hub-signature-256", &good)], false),
            (&[("x-gitea-signature", &good)], true),
            (&[("x-forgejo-signature", &bad)], false),
            (&[("x-gitlab-token", "s3cret")], true),
            (&[("x-gitlab-token", "s3cre")], false),
            (&[("x-hub-signature-256", "sha256=zz")], false),
            (&[], false),
        ];
        for (h, ok) in cases {
            assert_eq!(verify(&headers(h), body, secret), *ok, "{h:?}");
        }
    }
}
