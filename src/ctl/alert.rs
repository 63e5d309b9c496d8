//! `sumctl alert UNIT`: what `sum-alert@.service` runs when a site's unit
//! fails (`OnFailure=`) or, for backups and deploys, succeeds again after a
//! failure (`OnSuccess=`). It posts one small JSON document to a webhook and
//! mails it through `sendmail` when configured, rate-limited per unit, and
//! sends one recovery message when a failed unit succeeds again.
//!
//! The destinations are secrets of the host, not of the site: they live in
//! `/etc/sum/alerts.env` (every site) and `/etc/sum/alerts.d/<site>.env`
//! (one site; its lines win), root's own files that no site can read. The
//! webhook's URL is never printed: it may carry a token.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::envfile;
use crate::config::layout::Root;
use crate::system::failure::{exit_code, Failure};

use crate::ctl::alert_send::{deliver, Destinations, Message};

/// The host-wide alert settings.
pub const HOST_FILE: &str = "/etc/sum/alerts.env";
/// One file per site, `<site>.env`, read after the host-wide one.
pub const SITE_DIR: &str = "/etc/sum/alerts.d";
/// Per unit: when alerts were sent, and whether the unit is failing.
pub const STATE_DIR: &str = "/var/lib/sum/alerts";
/// Per unit: the result of a stop that `--stopped` queued for `sum-alert@`.
pub const PENDING_DIR: &str = "/run/sum/alerts";
/// How many journal lines of the failed run an alert carries.
const JOURNAL_LINES: usize = 20;

/// Where alerts go and how many may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub webhook: Option<String>,
    /// Added to the document as `topic` (ntfy's JSON publishing needs it).
    pub topic: Option<String>,
    pub email: Vec<String>,
    pub sendmail: PathBuf,
    /// At most `limit` failure alerts per unit within `period` seconds.
    pub limit: u32,
    pub period: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            webhook: None,
            topic: None,
            email: Vec::new(),
            sendmail: PathBuf::from("/usr/sbin/sendmail"),
            limit: 3,
            period: 3600,
        }
    }
}

/// The unit an alert is about: `sum-<kind>@<site>.service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub unit: String,
    pub site: String,
}

/// Reads `sum-backup@acme.service` (the instance of `sum-alert@`); only our
/// own site units are accepted.
pub fn parse_target(unit: &str) -> Result<Target, String> {
    let refuse = || {
        format!(
            "`{unit}` is not a unit of a site: expected sum-<kind>@<site>.service, \
             e.g. sum-backup@acme.service"
        )
    };
    let stem = unit.strip_suffix(".service").ok_or_else(refuse)?;
    let (kind, site) = stem.split_once('@').ok_or_else(refuse)?;
    let kind_ok = kind.strip_prefix("sum-").is_some_and(|k| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    });
    if !kind_ok || kind == "sum-alert" {
        return Err(refuse());
    }
    crate::config::site::check_site_name(site).map_err(|e| format!("{}: {e}", refuse()))?;
    Ok(Target {
        unit: unit.to_string(),
        site: site.to_string(),
    })
}

/// Builds the settings from the host file's and then the site file's
/// variables; a bad number is an error naming the file.
pub fn settings_from(files: &[(PathBuf, envfile::Env)]) -> Result<Settings, String> {
    let mut s = Settings::default();
    for (path, env) in files {
        for (k, v) in env {
            let bad = |what: &str| format!("{}: {k}={v:?} is not {what}", path.display());
            match k.as_str() {
                "SUM_ALERT_WEBHOOK" => s.webhook = Some(v.clone()).filter(|v| !v.is_empty()),
                "SUM_ALERT_TOPIC" => s.topic = Some(v.clone()).filter(|v| !v.is_empty()),
                "SUM_ALERT_EMAIL" => {
                    s.email = v
                        .split([',', ' '])
                        .filter(|a| !a.is_empty())
                        .map(str::to_string)
                        .collect();
                    if let Some(a) = s.email.iter().find(|a| {
                        !a.contains('@') || a.starts_with('-') || a.chars().any(char::is_control)
                    }) {
                        return Err(bad(&format!("a list of mail addresses ({a:?})")));
                    }
                }
                "SUM_ALERT_SENDMAIL" => s.sendmail = PathBuf::from(v),
                "SUM_ALERT_LIMIT" => s.limit = v.parse().map_err(|_| bad("a whole number"))?,
                "SUM_ALERT_PERIOD_SECONDS" => {
                    s.period = v
                        .parse()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| bad("a number of seconds above 0"))?
                }
                _ => {
                    return Err(format!(
                        "{}: unknown variable {k}; known: SUM_ALERT_WEBHOOK, SUM_ALERT_TOPIC, \
                         SUM_ALERT_EMAIL, SUM_ALERT_SENDMAIL, SUM_ALERT_LIMIT, \
                         SUM_ALERT_PERIOD_SECONDS",
                        path.display()
                    ))
                }
            }
        }
    }
    Ok(s)
}

/// Reads the host file and the site's file, the ones that exist. Both must
/// be root's and not world-readable, as a `.env` must.
pub fn read_settings(root: &Root, site: &str) -> Result<Settings, String> {
    let gid = root.is_system().then_some(0);
    let mut files = Vec::new();
    for path in [
        root.path(HOST_FILE),
        root.path(SITE_DIR).join(format!("{site}.env")),
    ] {
        if path.exists() {
            let env = envfile::read(&path, gid).map_err(|e| e.0)?;
            files.push((path, env));
        }
    }
    settings_from(&files)
}

/// What happened to the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    Failure,
    Recovery,
    Test,
}

/// The document posted to the webhook, and the mail's body.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// One line for a person: Slack reads `text`, Discord `content`, ntfy
    /// `message` (with `title` and `topic`).
    pub text: String,
    pub content: String,
    pub message: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    pub event: Event,
    pub site: String,
    pub unit: String,
    /// systemd's `Result` of the run (exit-code, signal, timeout, success…).
    pub result: String,
    pub host: String,
    pub time: String,
    /// Failure alerts of this unit not sent since the last one (rate limit).
    pub suppressed: u32,
    pub journal: Vec<String>,
}

/// Builds the alert; `suppressed`, `journal` and `topic` are filled in by
/// the caller (`held_back` says the first).
pub fn compose(event: Event, target: &Target, result: &str, host: &str, now: u64) -> Alert {
    let what = match event {
        Event::Failure => format!("FAILED ({result})"),
        Event::Recovery => "recovered: it succeeds again".to_string(),
        Event::Test => "test alert: `sumctl alert --test` reaches you".to_string(),
    };
    let mut text = format!("[{host}] {} {what}", target.unit);
    if event == Event::Failure {
        text.push_str(&format!(
            ". Next: `journalctl -u {}` and `sumctl status {}`",
            target.unit, target.site
        ));
    }
    Alert {
        content: text.clone(),
        message: text.clone(),
        title: format!("{}: {}", target.site, what),
        text,
        topic: None,
        event,
        site: target.site.clone(),
        unit: target.unit.clone(),
        result: result.to_string(),
        host: host.to_string(),
        time: crate::system::timefmt::iso_utc(now),
        suppressed: 0,
        journal: Vec::new(),
    }
}

impl Alert {
    /// Says that `n` failure alerts of this unit were held back before it.
    pub fn held_back(mut self, n: u32) -> Alert {
        if n > 0 {
            self.suppressed = n;
            self.text.push_str(&format!(
                " ({n} more failure alert(s) were held back by the rate limit)"
            ));
            self.content = self.text.clone();
            self.message = self.text.clone();
        }
        self
    }
}

/// One unit's alert history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// When failure alerts were sent (Unix seconds), within the period.
    pub sent: Vec<u64>,
    /// Failure alerts held back since the last one sent.
    pub suppressed: u32,
    /// A failure was reported and no recovery yet.
    pub failing: bool,
}

/// What to do with an event, given the unit's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Send,
    /// Over the rate limit: counted, not sent.
    HoldBack,
    /// A success with no failure reported before: nothing to say.
    Nothing,
}

/// The rate limit and the once-only recovery. `state` is updated as if the
/// decision were carried out; the caller saves it only when it was.
pub fn decide(state: &mut State, event: Event, now: u64, s: &Settings) -> Decision {
    state
        .sent
        .retain(|t| now.saturating_sub(*t) < s.period && *t <= now);
    match event {
        Event::Test => Decision::Send,
        Event::Recovery if !state.failing => Decision::Nothing,
        Event::Recovery => {
            state.failing = false;
            state.suppressed = 0;
            state.sent.clear();
            Decision::Send
        }
        Event::Failure => {
            state.failing = true;
            if state.sent.len() >= s.limit as usize {
                state.suppressed += 1;
                Decision::HoldBack
            } else {
                state.sent.push(now);
                Decision::Send
            }
        }
    }
}

fn state_path(root: &Root, unit: &str) -> PathBuf {
    root.path(STATE_DIR).join(format!("{unit}.json"))
}

fn load_state(path: &Path) -> State {
    // A damaged state file only loses the count: it never stops an alert.
    fs_err::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_state(path: &Path, state: &State) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs_err::create_dir_all(dir).map_err(|e| e.to_string())?;
    let bytes = serde_json::to_vec(state).map_err(|e| e.to_string())?;
    crate::system::fsutil::write_atomic(path, &bytes, 0o600).map_err(|e| e.to_string())
}

/// The mail: headers, then the text and the journal lines.
pub fn mail_text(alert: &Alert, to: &[String]) -> String {
    let one_line = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    let mut m = format!(
        "To: {}\nSubject: [sum {}] {}\nContent-Type: text/plain; charset=utf-8\n\n{}\n",
        one_line(&to.join(", ")),
        one_line(&alert.host),
        one_line(&alert.title),
        alert.text
    );
    if !alert.journal.is_empty() {
        m.push_str("\nThe run's last journal lines:\n");
        for l in &alert.journal {
            m.push_str("  ");
            m.push_str(l);
            m.push('\n');
        }
    }
    m
}

/// How `sumctl alert` learns about the run: from systemd, or given (tests,
/// `--test`).
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// systemd's `Result`; asked from systemd when None.
    pub result: Option<String>,
    pub test: bool,
    /// Run by `ExecStopPost=` of an app service: queue an alert when the
    /// stop was not a success (`$SERVICE_RESULT`), and return at once.
    pub stopped: bool,
}

/// What `--stopped` hands to `sum-alert@`: the run's result, and its
/// invocation for the journal lines (the unit may be running again by the
/// time the alert is sent).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    result: String,
    invocation: Option<String>,
}

fn pending_path(root: &Root, unit: &str) -> PathBuf {
    root.path(PENDING_DIR).join(format!("{unit}.json"))
}

/// `sumctl alert UNIT --stopped`, from `ExecStopPost=`: nothing after a
/// stop that succeeded; otherwise the result is written down and
/// `sum-alert@UNIT` started without waiting, so that a restart is not
/// held up by a webhook. Under a test root the alert is sent at once.
fn queue_stopped(
    root: &Root,
    what: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let target = parse_target(what).map_err(Failure::usage)?;
    let result = std::env::var("SERVICE_RESULT").map_err(|_| {
        Failure::usage("--stopped is for ExecStopPost=: $SERVICE_RESULT is not set")
    })?;
    if result == "success" {
        return Ok(());
    }
    let pending = Pending {
        result,
        invocation: std::env::var("INVOCATION_ID")
            .ok()
            .filter(|v| !v.is_empty()),
    };
    let path = pending_path(root, &target.unit);
    let bytes = serde_json::to_vec(&pending).map_err(|e| Failure::failed(e.to_string()))?;
    fs_err::create_dir_all(root.path(PENDING_DIR))
        .and_then(|()| crate::system::fsutil::write_atomic(&path, &bytes, 0o600))
        .map_err(|e| Failure::failed(e.to_string()))?;
    if !root.is_system() {
        return send_alert(root, what, &Run::default(), out, err);
    }
    crate::system::systemd::systemctl(&[
        "start",
        "--no-block",
        &format!("sum-alert@{}.service", target.unit),
    ])
    .map_err(Failure::failed)
}

/// The queued result of `unit`'s last stop, taken (the file is removed).
fn take_pending(root: &Root, unit: &str) -> Option<(String, Option<String>)> {
    let path = pending_path(root, unit);
    let pending: Pending = serde_json::from_slice(&fs_err::read(&path).ok()?).ok()?;
    let _ = fs_err::remove_file(&path);
    Some((pending.result, pending.invocation))
}

/// `sumctl alert UNIT` / `sumctl alert --test SITE`.
pub fn alert(root: &Root, what: &str, run: &Run, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    exit_code(send_alert(root, what, run, out, err), err)
}

fn send_alert(
    root: &Root,
    what: &str,
    run: &Run,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    if run.stopped {
        return queue_stopped(root, what, out, err);
    }
    let target = if run.test {
        crate::config::site::check_site_name(what).map_err(Failure::usage)?;
        Target {
            unit: format!("sum-deploy@{what}.service"),
            site: what.to_string(),
        }
    } else {
        parse_target(what).map_err(Failure::usage)?
    };
    let (result, invocation) = match &run.result {
        Some(r) => (r.clone(), None),
        None => take_pending(root, &target.unit).unwrap_or_else(|| unit_result(&target.unit)),
    };
    let event = match (run.test, result.as_str()) {
        (true, _) => Event::Test,
        (false, "success") => Event::Recovery,
        _ => Event::Failure,
    };
    let journal = invocation.map(|id| journal_lines(&id)).unwrap_or_default();
    notify(
        root,
        &Notice {
            target,
            event,
            result,
            journal,
        },
        out,
        err,
    )
}

/// What happened, for [`notify`].
#[derive(Debug, Clone)]
pub struct Notice {
    pub target: Target,
    pub event: Event,
    /// systemd's `Result`, or the probe's own word.
    pub result: String,
    /// The lines that say what happened (the run's journal, the probe's
    /// answers).
    pub journal: Vec<String>,
}

/// Sends one alert, rate-limited per unit, to every destination of the
/// site's settings; a recovery only after a failure was reported. Used by
/// `sumctl alert` and by the health probe.
pub fn notify(
    root: &Root,
    n: &Notice,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let settings = read_settings(root, &n.target.site).map_err(Failure::usage)?;
    let test = n.event == Event::Test;
    let path = state_path(root, &n.target.unit);
    let mut state = load_state(&path);
    let suppressed = state.suppressed;
    let now = crate::system::timefmt::now_unix();
    match decide(&mut state, n.event, now, &settings) {
        Decision::Nothing => return Ok(()),
        Decision::HoldBack => {
            let _ = writeln!(
                out,
                "{} failed ({}); alert held back: {} already sent within {} s \
                 (SUM_ALERT_LIMIT), {} held back so far",
                n.target.unit, n.result, settings.limit, settings.period, state.suppressed
            );
            return save_state(&path, &state).map_err(Failure::failed);
        }
        Decision::Send => {}
    }
    if settings.webhook.is_none() && settings.email.is_empty() {
        let _ = writeln!(
            out,
            "{} {}: no alert destination is configured; set SUM_ALERT_WEBHOOK or \
             SUM_ALERT_EMAIL in {HOST_FILE}",
            n.target.unit, n.result
        );
        if test {
            return Err(Failure::usage(format!(
                "no alert destination in {HOST_FILE}"
            )));
        }
        // Remembered, so that a recovery still follows this failure.
        return save_state(&path, &state).map_err(Failure::failed);
    }
    let held = if n.event == Event::Failure {
        suppressed
    } else {
        0
    };
    let mut alert = compose(n.event, &n.target, &n.result, &hostname(), now).held_back(held);
    alert.journal = n.journal.clone();
    alert.topic = settings.topic.clone();
    let to = Destinations {
        webhook: settings.webhook.as_deref(),
        email: &settings.email,
        sendmail: &settings.sendmail,
    };
    let msg = Message {
        unit: alert.unit.clone(),
        json: serde_json::to_string(&alert).map_err(|e| Failure::failed(e.to_string()))?,
        mail: mail_text(&alert, &settings.email),
    };
    let reached = deliver(&to, &msg, err)?;
    if n.event == Event::Failure {
        state.suppressed = 0;
    }
    if !test {
        save_state(&path, &state).map_err(Failure::failed)?;
    }
    let _ = writeln!(out, "{}: sent to {}", alert.text, reached.join(" and "));
    Ok(())
}

/// The unit's `Result` and the `InvocationID` of its last run.
fn unit_result(unit: &str) -> (String, Option<String>) {
    let result =
        crate::system::systemd::property(unit, "Result").unwrap_or_else(|| "unknown".into());
    (
        result,
        crate::system::systemd::property(unit, "InvocationID"),
    )
}

/// The last lines the run logged, by its invocation id.
fn journal_lines(invocation: &str) -> Vec<String> {
    let out = std::process::Command::new("journalctl")
        .arg(format!("_SYSTEMD_INVOCATION_ID={invocation}"))
        .args(["-o", "cat", "--no-pager", "-n"])
        .arg(JOURNAL_LINES.to_string())
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| crate::system::text::excerpt(l, 300))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn hostname() -> String {
    fs_err::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn settings(limit: u32, period: u64) -> Settings {
        Settings {
            limit,
            period,
            ..Settings::default()
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> envfile::Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_units_of_a_site_are_targets() {
        let t = parse_target("sum-backup@acme.service").unwrap();
        assert_eq!(
            (t.unit.as_str(), t.site.as_str()),
            ("sum-backup@acme.service", "acme")
        );
        let t = parse_target("sum-process-worker@shop-2.service").unwrap();
        assert_eq!(t.site, "shop-2");
        for bad in [
            "sum-backup@acme.timer",
            "sum-backup@acme",
            "backup@acme.service",
            "sum-backup@../etc.service",
            "sum-backup@Acme.service",
            "sum-alert@acme.service",
            "sum-@acme.service",
            "sum-backup@.service",
            "",
        ] {
            let e = parse_target(bad).unwrap_err();
            assert!(e.contains("sum-<kind>@<site>.service"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_site_file_wins_over_the_host_file() {
        let host = vars(&[
            ("SUM_ALERT_WEBHOOK", "https://hooks.example/host"),
            ("SUM_ALERT_EMAIL", "ops@example.com, oncall@example.com"),
            ("SUM_ALERT_LIMIT", "5"),
        ]);
        let site = vars(&[
            ("SUM_ALERT_WEBHOOK", "https://hooks.example/acme"),
            ("SUM_ALERT_PERIOD_SECONDS", "600"),
        ]);
        let s = settings_from(&[("/h".into(), host), ("/s".into(), site)]).unwrap();
        assert_eq!(s.webhook.as_deref(), Some("https://hooks.example/acme"));
        assert_eq!(s.email, ["ops@example.com", "oncall@example.com"]);
        assert_eq!((s.limit, s.period), (5, 600));
        // An empty line in the site's file switches the host's webhook off.
        let off = vars(&[("SUM_ALERT_WEBHOOK", "")]);
        let s = settings_from(&[
            ("/h".into(), vars(&[("SUM_ALERT_WEBHOOK", "https://x")])),
            ("/s".into(), off),
        ])
        .unwrap();
        assert_eq!(s.webhook, None);
    }

    #[test]
    fn bad_settings_name_the_file_and_the_variable() {
        for (k, v, says) in [
            ("SUM_ALERT_LIMIT", "many", "a whole number"),
            ("SUM_ALERT_PERIOD_SECONDS", "0", "seconds above 0"),
            ("SUM_ALERT_EMAIL", "-oQ/tmp", "mail addresses"),
            ("SUM_ALERT_EMAIL", "nobody", "mail addresses"),
            (
                "SUM_ALERT_WEBHOK",
                "https://x",
                "unknown variable SUM_ALERT_WEBHOK",
            ),
        ] {
            let e = settings_from(&[("/etc/sum/alerts.env".into(), vars(&[(k, v)]))]).unwrap_err();
            assert!(e.starts_with("/etc/sum/alerts.env: "), "{e}");
            assert!(e.contains(says), "{k}={v}: {e}");
        }
    }

    #[test]
    fn a_crash_loop_sends_the_limit_then_holds_back_and_counts() {
        let s = settings(3, 3600);
        let mut st = State::default();
        let decisions: Vec<Decision> = (0..10)
            .map(|i| decide(&mut st, Event::Failure, 1000 + i * 10, &s))
            .collect();
        assert_eq!(
            decisions.iter().filter(|d| **d == Decision::Send).count(),
            3
        );
        assert_eq!(decisions[3..], [Decision::HoldBack; 7]);
        assert_eq!(st.suppressed, 7);
        // After the period, the next failure goes out again.
        assert_eq!(
            decide(&mut st, Event::Failure, 1000 + 3600 + 100, &s),
            Decision::Send
        );
    }

    #[test]
    fn recovery_is_sent_once_and_only_after_a_failure() {
        let s = settings(3, 3600);
        let mut st = State::default();
        assert_eq!(decide(&mut st, Event::Recovery, 10, &s), Decision::Nothing);
        assert_eq!(decide(&mut st, Event::Failure, 20, &s), Decision::Send);
        assert_eq!(decide(&mut st, Event::Recovery, 30, &s), Decision::Send);
        assert_eq!(decide(&mut st, Event::Recovery, 40, &s), Decision::Nothing);
        assert_eq!(st, State::default());
    }

    #[test]
    fn the_document_names_site_unit_result_and_host_and_held_back_alerts() {
        let t = parse_target("sum-backup@acme.service").unwrap();
        let a = compose(Event::Failure, &t, "exit-code", "vps1", 0).held_back(4);
        let v: serde_json::Value = serde_json::to_value(&a).unwrap();
        assert_eq!(v["site"], "acme");
        assert_eq!(v["unit"], "sum-backup@acme.service");
        assert_eq!(v["result"], "exit-code");
        assert_eq!(v["event"], "failure");
        assert_eq!(v["host"], "vps1");
        assert_eq!(v["suppressed"], 4);
        assert_eq!(v["time"], "1970-01-01T00:00:00Z");
        assert!(v.get("topic").is_none());
        let text = v["text"].as_str().unwrap();
        assert!(
            text.starts_with("[vps1] sum-backup@acme.service FAILED (exit-code)"),
            "{text}"
        );
        assert!(text.contains("4 more failure alert(s)"), "{text}");
        assert_eq!(v["content"], v["text"]);
        assert_eq!(v["message"], v["text"]);
        let r = compose(Event::Recovery, &t, "success", "vps1", 0);
        assert!(r.text.contains("recovered"), "{}", r.text);
    }

    proptest! {
        /// Whatever the times, no period ever holds more than `limit` sent
        /// failure alerts, and every failure is either sent or counted.
        #[test]
        fn no_period_holds_more_than_the_limit(
            gaps in proptest::collection::vec(0u64..900, 1..60),
            limit in 1u32..6,
            period in 60u64..4000,
        ) {
            let s = settings(limit, period);
            let mut st = State::default();
            let mut now = 1_000_000;
            let mut sent = Vec::new();
            let mut held = 0u32;
            for g in gaps {
                now += g;
                match decide(&mut st, Event::Failure, now, &s) {
                    Decision::Send => { sent.push(now); st.suppressed = 0; }
                    Decision::HoldBack => held += 1,
                    Decision::Nothing => prop_assert!(false, "a failure is never ignored"),
                }
            }
            for (i, t) in sent.iter().enumerate() {
                let within = sent[i..].iter().filter(|u| **u - *t < period).count();
                prop_assert!(within <= limit as usize, "{within} sent within {period} s of {t}");
            }
            prop_assert!(held >= st.suppressed);
        }

        /// Whatever the title holds, the mail has exactly its own headers.
        #[test]
        fn the_mail_headers_cannot_be_extended(unit_text in "\\PC*", host in "[a-z\\n\\r:]{0,20}") {
            let t = parse_target("sum-backup@acme.service").unwrap();
            let mut a = compose(Event::Failure, &t, &unit_text, &host, 0);
            a.title = format!("acme: {unit_text}\r\nBcc: x@y");
            let m = mail_text(&a, &["ops@example.com".into()]);
            let head = m.split("\n\n").next().unwrap();
            prop_assert_eq!(head.lines().count(), 3, "{}", head);
            prop_assert!(!head.contains("\nBcc:"));
        }
    }
}
