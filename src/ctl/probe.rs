//! `sumctl probe <site>`: what `sum-probe@<site>.service` runs every
//! `[health] probe_every` (docs/monitoring.md, "Health probes"). It asks the
//! site's first health path through its socket and through Caddy, writes
//! the answers as metrics (with the expiry of the certificates Caddy holds
//! for it), and after `[health] probe_alert_after` failed probes in a row
//! raises the alert of `sumctl alert`; the first good probe after that
//! sends one recovery message.
//!
//! It stays cheap and quiet: a site whose gunicorn has not started yet
//! (socket activation: nobody has asked since boot) is not woken, only its
//! listening socket is checked; a good probe prints nothing, so the journal
//! does not grow every minute.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::layout::{Root, SiteLayout};
use crate::config::site::Site;
use crate::ctl::alert::{self, Event, Notice, Target};
use crate::system::failure::{exit_code, Failure};
use crate::system::metrics::Family;

/// Consecutive failures, per site.
pub const STATE_DIR: &str = "/var/lib/sum/probe";
/// A probe never waits longer than this for one answer.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// One way of asking.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// `socket` or `caddy`.
    pub via: &'static str,
    pub up: bool,
    /// The HTTP status, 0 when nothing answered.
    pub status: u16,
    pub seconds: f64,
    /// What was wrong, for a person.
    pub problem: Option<String>,
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// gunicorn has not started and the socket listens: not woken.
    Idle,
    Asked(Vec<Answer>),
}

impl Probe {
    pub fn up(&self) -> bool {
        match self {
            Probe::Idle => true,
            Probe::Asked(answers) => answers.iter().all(|a| a.up),
        }
    }
}

/// The probe's memory between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub consecutive_failures: u32,
}

/// What to tell, given the state before and this probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tell {
    Nothing,
    /// The `probe_alert_after`-th failure in a row: once per outage.
    Failure,
    /// Good again after an outage that was reported (the alert module sends
    /// it only when a failure was sent).
    Recovery,
}

/// Counts failures in a row; the alert goes once, at exactly `after`.
pub fn step(state: &mut State, up: bool, after: u32) -> Tell {
    if up {
        let was = std::mem::take(&mut state.consecutive_failures);
        return if was >= after {
            Tell::Recovery
        } else {
            Tell::Nothing
        };
    }
    state.consecutive_failures = state.consecutive_failures.saturating_add(1);
    if state.consecutive_failures == after {
        Tell::Failure
    } else {
        Tell::Nothing
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let v = f();
    (v, start.elapsed().as_secs_f64())
}

/// Asks through the socket: the answer judged by the smoke check's rules.
fn via_socket(site: &Site, socket: &Path, timeout: Duration) -> Answer {
    let path = &site.health.path;
    let (got, seconds) = timed(|| crate::probe::smoke::get(socket, &site.domain, path, timeout));
    judged("socket", got.map_err(|e| e.to_string()), site, seconds)
}

/// Asks through Caddy, as a visitor would (127.0.0.1:443, the site's name).
fn via_caddy(site: &Site) -> Answer {
    let (got, seconds) = timed(|| crate::probe::public::get_once(site, &site.health.path));
    judged("caddy", got, site, seconds)
}

fn judged(
    via: &'static str,
    got: Result<crate::probe::smoke::Response, String>,
    site: &Site,
    seconds: f64,
) -> Answer {
    match got {
        Ok(r) => {
            let verdict = crate::probe::smoke::judge(&r, &site.domain, &site.health.path);
            Answer {
                via,
                up: verdict.is_ok(),
                status: r.status,
                seconds,
                problem: verdict.err().map(|f| f.to_string()),
            }
        }
        Err(e) => Answer {
            via,
            up: false,
            status: 0,
            seconds,
            problem: Some(format!(
                "no answer: {}",
                crate::system::text::excerpt(&e, 300)
            )),
        },
    }
}

/// Probes once. On a real system an idle site (socket listening, gunicorn
/// not started) is not woken; elsewhere (test roots) the socket is asked
/// and Caddy is not.
pub fn probe_site(root: &Root, site: &Site) -> Probe {
    let l = SiteLayout::new(&site.name);
    let socket = root.path(&l.socket);
    let timeout = site.health.timeout.min(MAX_WAIT);
    if !root.is_system() {
        return Probe::Asked(vec![via_socket(site, &socket, timeout)]);
    }
    let service = format!("sum-gunicorn@{}.service", site.name);
    if !crate::system::systemd::is_active(&service) {
        // systemd's word for the socket: reading PID 1's descriptors
        // (`listens_on`) needs a capability the probe's sandbox drops.
        if crate::system::systemd::is_active(&format!("sum-gunicorn@{}.socket", site.name)) {
            return Probe::Idle;
        }
        let down = |via| Answer {
            via,
            up: false,
            status: 0,
            seconds: 0.0,
            problem: Some(format!(
                "{service} is not running and nothing listens on {}",
                socket.display()
            )),
        };
        return Probe::Asked(vec![down("socket"), down("caddy")]);
    }
    Probe::Asked(vec![via_socket(site, &socket, timeout), via_caddy(site)])
}

/// The probe's metrics, with the certificates' expiry.
pub fn families(
    site: &Site,
    probe: &Probe,
    state: &State,
    certs: &[crate::probe::certs::Certificate],
    now: u64,
) -> Vec<Family> {
    let s = [("site", site.name.as_str())];
    let mut up = Family::gauge(
        "sum_probe_up",
        "1 if the health path answered as the smoke check wants, 0 if not; by way (socket, caddy).",
    );
    let mut status = Family::gauge(
        "sum_probe_http_status",
        "The HTTP status of the last probe, 0 when nothing answered.",
    );
    let mut seconds = Family::gauge(
        "sum_probe_duration_seconds",
        "How long the last probe's answer took.",
    );
    if let Probe::Asked(answers) = probe {
        for a in answers {
            let labels = [("site", site.name.as_str()), ("via", a.via)];
            up = up.sample(&labels, if a.up { 1.0 } else { 0.0 });
            status = status.sample(&labels, f64::from(a.status));
            seconds = seconds.sample(&labels, a.seconds);
        }
    }
    let mut expiry = Family::gauge(
        "sum_certificate_expiry_timestamp_seconds",
        "When the certificate Caddy holds for the domain ends (Unix time).",
    );
    for c in certs {
        expiry = expiry.sample(
            &[
                ("site", site.name.as_str()),
                ("domain", &c.domain),
                ("issuer", &c.issuer),
            ],
            c.expires_unix as f64,
        );
    }
    vec![
        Family::gauge(
            "sum_probe_last_timestamp_seconds",
            "When the last probe ran (Unix time).",
        )
        .sample(&s, now as f64),
        Family::gauge(
            "sum_probe_idle",
            "1 if gunicorn had not started (socket activation) and was not woken.",
        )
        .sample(&s, if *probe == Probe::Idle { 1.0 } else { 0.0 }),
        Family::gauge("sum_probe_consecutive_failures", "Failed probes in a row.")
            .sample(&s, f64::from(state.consecutive_failures)),
        up,
        status,
        seconds,
        expiry,
    ]
}

/// `sumctl probe <site>`.
pub fn probe(root: &Root, name: &str, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    exit_code(run_probe(root, name, out, err), err)
}

fn run_probe(
    root: &Root,
    name: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let site = crate::config::sites::load_site(root, name).map_err(Failure::usage)?;
    let probe = probe_site(root, &site);
    let path = root.path(STATE_DIR).join(format!("{name}.json"));
    let mut state: State = fs_err::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let after = site.health.probe_alert_after;
    let tell = step(&mut state, probe.up(), after);
    let problems: Vec<String> = match &probe {
        Probe::Asked(answers) => answers
            .iter()
            .filter_map(|a| a.problem.as_ref().map(|p| format!("via {}: {p}", a.via)))
            .collect(),
        Probe::Idle => Vec::new(),
    };
    if !probe.up() {
        let _ = writeln!(
            out,
            "{name}: warning: health probe failed ({} in a row; an alert goes at {after}): {}",
            state.consecutive_failures,
            problems.join("; ")
        );
    }
    let mut domains = vec![site.domain.as_str()];
    domains.extend(site.aliases.iter().map(String::as_str));
    let (certs, notes) = crate::probe::certs::certificates(root, &domains);
    for n in notes {
        let _ = writeln!(err, "sumctl probe {name}: warning: {n}");
    }
    let now = crate::system::timefmt::now_unix();
    let dir = root.path(crate::system::metrics::dir());
    let file = crate::system::metrics::file_name(name, "probe");
    if let Err(e) =
        crate::system::metrics::write(&dir, &file, &families(&site, &probe, &state, &certs, now))
    {
        let _ = writeln!(
            err,
            "sumctl probe {name}: warning: metrics not written: {e}"
        );
    }
    fs_err::create_dir_all(root.path(STATE_DIR)).map_err(|e| Failure::failed(e.to_string()))?;
    let bytes = serde_json::to_vec(&state).map_err(|e| Failure::failed(e.to_string()))?;
    crate::system::fsutil::write_atomic(&path, &bytes, 0o600)
        .map_err(|e| Failure::failed(e.to_string()))?;
    let event = match tell {
        Tell::Nothing => return Ok(()),
        Tell::Failure => Event::Failure,
        Tell::Recovery => Event::Recovery,
    };
    let notice = Notice {
        target: Target {
            unit: format!("sum-probe@{name}.service"),
            site: name.to_string(),
        },
        event,
        result: if event == Event::Failure {
            format!("health check failed {after} times in a row")
        } else {
            "success".to_string()
        },
        journal: problems,
    };
    alert::notify(root, &notice, out, err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_alert_goes_at_the_nth_failure_and_the_recovery_after_it() {
        let mut s = State::default();
        let tells: Vec<Tell> = [false, false, false, false, true, true, false, true]
            .iter()
            .map(|up| step(&mut s, *up, 3))
            .collect();
        use Tell::*;
        assert_eq!(
            tells,
            [Nothing, Nothing, Failure, Nothing, Recovery, Nothing, Nothing, Nothing]
        );
    }

    proptest! {
        /// Over any sequence of probes: one failure alert per run of at
        /// least `after` failures, and one recovery after each such run
        /// that ended; short runs tell nothing.
        #[test]
        fn one_alert_and_one_recovery_per_long_outage(
            ups in proptest::collection::vec(any::<bool>(), 0..200),
            after in 1u32..6,
        ) {
            let mut s = State::default();
            let mut failures = 0;
            let mut recoveries = 0;
            for up in &ups {
                match step(&mut s, *up, after) {
                    Tell::Failure => failures += 1,
                    Tell::Recovery => recoveries += 1,
                    Tell::Nothing => {}
                }
            }
            let mut long_runs = 0;
            let mut ended_long_runs = 0;
            let mut run = 0;
            for up in &ups {
                if *up {
                    if run >= after { ended_long_runs += 1; }
                    run = 0;
                } else {
                    run += 1;
                    if run == after { long_runs += 1; }
                }
            }
            prop_assert_eq!(failures, long_runs);
            prop_assert_eq!(recoveries, ended_long_runs);
        }
    }
}
