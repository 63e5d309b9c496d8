//! The certificates Caddy holds for a site's host names, read from Caddy's
//! storage: on Debian, caddy.service runs as `caddy` with HOME=/var/lib/caddy,
//! so they are `/var/lib/caddy/.local/share/caddy/certificates/<issuer>/
//! <name>/<name>.crt`. The issuer `local` is Caddy's internal CA (for
//! `.localhost` and `tls internal`): its certificates live for hours and are
//! renewed by Caddy all the time, so they are reported but never judged.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::layout::Root;

/// Caddy's certificate storage, as Debian's caddy.service sets it up.
pub const CADDY_CERTS: &str = "/var/lib/caddy/.local/share/caddy/certificates";

/// One certificate Caddy holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Certificate {
    pub domain: String,
    /// The issuer's directory in Caddy's storage (`local`, or the ACME
    /// directory's host and path).
    pub issuer: String,
    /// notAfter, as Unix seconds and as ISO 8601 UTC.
    pub expires_unix: u64,
    pub expires: String,
    /// From Caddy's internal CA: short-lived and renewed by Caddy.
    pub internal: bool,
}

/// The certificates of `domains`, one per domain and issuer, in the order
/// of `domains`. A file that cannot be read or parsed is left out with a
/// note in the second list.
pub fn certificates(root: &Root, domains: &[&str]) -> (Vec<Certificate>, Vec<String>) {
    certificates_in(&root.path(CADDY_CERTS), domains)
}

pub fn certificates_in(dir: &Path, domains: &[&str]) -> (Vec<Certificate>, Vec<String>) {
    let mut found = Vec::new();
    let mut notes = Vec::new();
    let mut issuers: Vec<String> = match fs_err::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => return (found, notes),
    };
    issuers.sort();
    for domain in domains {
        for issuer in &issuers {
            let file: PathBuf = dir.join(issuer).join(domain).join(format!("{domain}.crt"));
            let Ok(pem) = fs_err::read_to_string(&file) else {
                continue;
            };
            match crate::system::x509::not_after_pem(&pem) {
                Ok(t) => {
                    let unix = u64::try_from(t).unwrap_or(0);
                    found.push(Certificate {
                        domain: domain.to_string(),
                        issuer: issuer.clone(),
                        expires_unix: unix,
                        expires: crate::system::timefmt::iso_utc(unix),
                        internal: issuer == "local",
                    });
                }
                Err(e) => notes.push(format!("{}: {e}", file.display())),
            }
        }
    }
    (found, notes)
}
