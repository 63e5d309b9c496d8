//! The public half of the smoke check (SPEC §7 step 7): `GET
//! https://<domain><path>` for each health path through Caddy, as a visitor
//! would.
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
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::config::site::Site;
use crate::probe::smoke::Response;
use crate::probe::wait::Wait;

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

/// One GET: the answer, whatever its status, or why there was none.
fn get(agent: &ureq::Agent, url: &str) -> Result<Response, String> {
    // A 4xx/5xx is an answer too: judged like a 200, body and all.
    let resp = match agent.get(url).call() {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => return Err(format!("{url}: {e}")),
    };
    let status = resp.status();
    let location = resp.header("location").map(str::to_string);
    let body = body_of(resp);
    Ok(Response {
        status,
        body,
        location,
    })
}

/// One GET of `https://<domain><path>` through Caddy on this machine, no
/// retry: the health probe's way in.
pub fn get_once(site: &Site, path: &str) -> Result<Response, String> {
    get(&agent(), &format!("https://{}{}", site.domain, path))
}

/// Polls each health path's public URL in turn, all within
/// `health.timeout`, with the smoke check's rules
/// ([`crate::probe::wait`]): until it passes, fails for good or the time
/// is up; the first that fails ends the check. Not reaching Caddy at all
/// ends it at once, as a warning.
pub fn check(site: &Site) -> Result<String, PublicError> {
    let agent = agent();
    let mut wait = Wait::new(site.health.timeout);
    let mut passed = Vec::new();
    for path in site.health.paths() {
        let url = format!("https://{}{}", site.domain, path);
        let r = poll_url(&agent, &mut wait, &site.domain, path, &url)?;
        passed.push(format!("{url} answered {}", r.answered()));
    }
    Ok(passed.join("; "))
}

/// One URL, polled within what is left of `wait`.
fn poll_url(
    agent: &ureq::Agent,
    wait: &mut Wait,
    host: &str,
    path: &str,
    url: &str,
) -> Result<Response, PublicError> {
    wait.next_path();
    loop {
        let r = get(agent, url).map_err(PublicError::Unreachable)?;
        match wait.answer(&r, host, path) {
            Some(Ok(())) => return Ok(r),
            Some(Err(failed)) => {
                return Err(PublicError::Failed {
                    url: url.to_string(),
                    failed,
                })
            }
            None => wait.pause(),
        }
    }
}
