//! The public half of the smoke check (SPEC §7 step 7): `GET
//! https://<domain><health.path>` through Caddy, as a visitor would.
//!
//! It connects to this machine (127.0.0.1:443) with the site's name for SNI
//! and Host, so it neither depends on DNS nor on the network hairpinning
//! back to the machine's public address. It trusts the public roots and
//! Caddy's own local CA (which issues the certificates of `.localhost` and
//! `tls internal` sites).
//!
//! What fails a deploy is an HTTP answer that fails the health rules. Not
//! being able to connect or complete TLS is reported as a warning: that is
//! Caddy's certificate or the network, not the release, and a first deploy
//! of a site whose DNS is not switched yet must not be rolled back for it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::config::site::Site;

/// Where Caddy (running as the `caddy` user) keeps its local CA's root.
pub const CADDY_LOCAL_ROOT: &str =
    "/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt";

#[derive(Debug)]
pub enum PublicError {
    /// An answer that fails the health rules: the deploy fails.
    Failed {
        url: String,
        failed: crate::probe::smoke::Failed,
    },
    /// No answer at all (connection, TLS): a warning.
    Unreachable(String),
}

fn agent() -> ureq::Agent {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Ok(cert) = CertificateDer::from_pem_file(CADDY_LOCAL_ROOT) {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    let local = |_: &str| -> std::io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], 443))])
    };
    let mut b = ureq::AgentBuilder::new()
        .resolver(local)
        .redirects(0)
        .timeout_connect(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .user_agent("sum-golden-path smoke check");
    if let Ok(c) = config {
        b = b.tls_config(Arc::new(c));
    }
    b.build()
}

/// The body, as far as [`crate::probe::smoke::MAX_RESPONSE`] and lossily decoded:
/// `into_string` would give up on invalid UTF-8 or a large body.
fn body_of(resp: ureq::Response) -> String {
    use std::io::Read;
    let mut raw = Vec::new();
    let _ = resp
        .into_reader()
        .take(crate::probe::smoke::MAX_RESPONSE)
        .read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

/// Polls the public URL until it passes, fails the health rules at the
/// end of `health.timeout`, or cannot be reached at all.
pub fn check(site: &Site) -> Result<String, PublicError> {
    let url = format!("https://{}{}", site.domain, site.health.path);
    let agent = agent();
    let deadline = Instant::now() + site.health.timeout;
    loop {
        // A 4xx/5xx is an answer too: judged like a 200, body and all.
        let answer = match agent.get(&url).call() {
            Ok(resp) => Ok((resp.status(), resp)),
            Err(ureq::Error::Status(status, resp)) => Ok((status, resp)),
            Err(e) => Err(PublicError::Unreachable(format!("{url}: {e}"))),
        };
        let outcome = answer.and_then(|(status, resp)| {
            let body = body_of(resp);
            crate::probe::smoke::judge(
                &crate::probe::smoke::Response { status, body },
                &site.domain,
                &site.health.path,
            )
            .map(|()| status)
            .map_err(|failed| PublicError::Failed {
                url: url.clone(),
                failed,
            })
        });
        match outcome {
            Ok(status) => return Ok(format!("{url} answered {status}")),
            Err(PublicError::Unreachable(e)) => return Err(PublicError::Unreachable(e)),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}
