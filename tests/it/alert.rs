//! `sumctl alert`, as `sum-alert@.service` runs it, against a real HTTP
//! receiver on 127.0.0.1 and a mail command that keeps what it is given:
//! the document received, the rate limit, the recovery message, and a
//! webhook that refuses or cannot be reached (said without its URL).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

const BIN: &str = env!("CARGO_BIN_EXE_sumctl");
/// A token in the URL, as Slack's and Discord's webhooks carry one.
const TOKEN: &str = "T0KEN-s3cr3t";

/// Answers every POST with `status` and keeps the bodies.
pub(crate) struct Receiver {
    pub(crate) url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Receiver {
    pub(crate) fn start(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/{TOKEN}", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                let mut json = false;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    json |= lower.starts_with("content-type: application/json");
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                assert!(json, "the alert is posted as application/json");
                kept.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { url, bodies }
    }

    pub(crate) fn received(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }
}

pub(crate) fn write_secret(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn alert(root: &Path, args: &[&str]) -> (Output, String) {
    let out = Command::new(BIN)
        .arg("alert")
        .args(args)
        .env("SUM_ROOT", root)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains(TOKEN),
        "the webhook's URL was printed:\n{text}"
    );
    (out, text)
}

#[test]
fn a_failed_backup_posts_one_document_and_a_crash_loop_only_the_limit() {
    let root = tempfile::tempdir().unwrap();
    let hook = Receiver::start(200);
    let mail_dir = tempfile::tempdir().unwrap();
    let sendmail = mail_dir.path().join("sendmail");
    let kept = mail_dir.path().join("kept");
    std::fs::write(
        &sendmail,
        format!(
            "#!/bin/sh\necho \"$@\" >> {k}.args\ncat >> {k}\n",
            k = kept.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&sendmail, std::fs::Permissions::from_mode(0o755)).unwrap();
    write_secret(
        &root.path().join("etc/sum/alerts.env"),
        &format!(
            "SUM_ALERT_WEBHOOK={}\nSUM_ALERT_EMAIL=ops@example.com\nSUM_ALERT_SENDMAIL={}\n\
             SUM_ALERT_LIMIT=2\n",
            hook.url,
            sendmail.display()
        ),
    );

    let (out, text) = alert(
        root.path(),
        &["sum-backup@acme.service", "--result", "exit-code"],
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("sent to the webhook and ops@example.com"),
        "{text}"
    );
    let got = hook.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let doc = &got[0];
    assert_eq!(doc["site"], "acme");
    assert_eq!(doc["unit"], "sum-backup@acme.service");
    assert_eq!(doc["result"], "exit-code");
    assert_eq!(doc["event"], "failure");
    assert!(doc["host"].as_str().is_some_and(|h| !h.is_empty()), "{doc}");
    assert!(doc["text"].as_str().unwrap().contains("FAILED"), "{doc}");
    let mail = std::fs::read_to_string(&kept).unwrap();
    assert!(
        mail.starts_with("To: ops@example.com\nSubject: [sum "),
        "{mail}"
    );
    assert_eq!(
        std::fs::read_to_string(kept.with_extension("args")).unwrap(),
        "-oi -t\n"
    );

    // A crash loop: five more failures, one more is sent (limit 2), four
    // are held back and counted.
    for _ in 0..5 {
        let (out, text) = alert(
            root.path(),
            &["sum-backup@acme.service", "--result", "signal"],
        );
        assert!(out.status.success(), "{text}");
    }
    let (_, text) = alert(
        root.path(),
        &["sum-backup@acme.service", "--result", "signal"],
    );
    assert!(text.contains("alert held back: 2 already sent"), "{text}");
    assert_eq!(hook.received().len(), 2);
    // Another unit of the site has its own count.
    let (out, _) = alert(
        root.path(),
        &["sum-gunicorn@acme.service", "--result", "signal"],
    );
    assert!(out.status.success());
    assert_eq!(hook.received().len(), 3);

    // The backup succeeds again: one recovery message, which also ends the
    // count; a second success says nothing.
    let (out, text) = alert(
        root.path(),
        &["sum-backup@acme.service", "--result", "success"],
    );
    assert!(out.status.success(), "{text}");
    let (out, _) = alert(
        root.path(),
        &["sum-backup@acme.service", "--result", "success"],
    );
    assert!(out.status.success());
    let got = hook.received();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[3]["event"], "recovery");
    assert_eq!(got[3]["unit"], "sum-backup@acme.service");
    // The next failure is sent, not held back.
    let (_, text) = alert(
        root.path(),
        &["sum-backup@acme.service", "--result", "exit-code"],
    );
    assert!(text.contains("sent to"), "{text}");
    assert_eq!(hook.received().len(), 5);
}

#[test]
fn a_webhook_that_refuses_or_is_gone_fails_the_alert_without_showing_its_url() {
    let root = tempfile::tempdir().unwrap();
    let hook = Receiver::start(500);
    let env = root.path().join("etc/sum/alerts.env");
    write_secret(&env, &format!("SUM_ALERT_WEBHOOK={}\n", hook.url));
    let (out, text) = alert(
        root.path(),
        &["sum-deploy@acme.service", "--result", "exit-code"],
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("the webhook answered HTTP 500"), "{text}");
    assert_eq!(hook.received().len(), 1);

    // A closed port: nothing listens there any more.
    let gone = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hooks/{TOKEN}", l.local_addr().unwrap())
    };
    write_secret(&env, &format!("SUM_ALERT_WEBHOOK={gone}\n"));
    let (out, text) = alert(
        root.path(),
        &["sum-deploy@acme.service", "--result", "exit-code"],
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("the webhook could not be reached"), "{text}");
}

#[test]
fn settings_are_checked_and_a_test_alert_needs_a_destination() {
    let root = tempfile::tempdir().unwrap();
    // Nothing configured: the failure is only logged, the test alert fails.
    let (out, text) = alert(
        root.path(),
        &["sum-backup@acme.service", "--result", "exit-code"],
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("no alert destination is configured"),
        "{text}"
    );
    let (out, text) = alert(root.path(), &["--test", "acme"]);
    assert_eq!(out.status.code(), Some(2), "{text}");

    // A world-readable file holding the webhook is refused.
    let env = root.path().join("etc/sum/alerts.env");
    write_secret(&env, "SUM_ALERT_WEBHOOK=http://127.0.0.1:9/x\n");
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (out, text) = alert(root.path(), &["--test", "acme"]);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("world-readable"), "{text}");

    // A typo in a variable's name is named.
    write_secret(&env, "SUM_ALERT_WEBHOK=http://127.0.0.1:9/x\n");
    let (out, text) = alert(root.path(), &["--test", "acme"]);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("unknown variable SUM_ALERT_WEBHOK"), "{text}");

    // Not a site's unit.
    let (out, text) = alert(root.path(), &["ssh.service", "--result", "exit-code"]);
    assert_eq!(out.status.code(), Some(2), "{text}");

    // The site's own file adds its webhook; the test alert reaches it.
    let hook = Receiver::start(204);
    write_secret(&env, "SUM_ALERT_LIMIT=1\n");
    write_secret(
        &root.path().join("etc/sum/alerts.d/acme.env"),
        &format!(
            "SUM_ALERT_WEBHOOK={}\nSUM_ALERT_TOPIC=acme-alerts\n",
            hook.url
        ),
    );
    let (out, text) = alert(root.path(), &["--test", "acme"]);
    assert!(out.status.success(), "{text}");
    let got = hook.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["event"], "test");
    assert_eq!(got[0]["topic"], "acme-alerts");
}

/// `ExecStopPost=+sumctl alert %n --stopped`, as systemd runs it after
/// every stop of an app service: silent after a stop that succeeded; after
/// a crash the alert carries the stop's result (here sent at once: under a
/// test root there is no sum-alert@ to hand it to).
#[test]
fn a_stop_that_failed_alerts_and_one_that_succeeded_says_nothing() {
    let root = tempfile::tempdir().unwrap();
    let hook = Receiver::start(200);
    write_secret(
        &root.path().join("etc/sum/alerts.env"),
        &format!("SUM_ALERT_WEBHOOK={}\n", hook.url),
    );
    let stopped = |result: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["alert", "sum-celery@acme.service", "--stopped"])
            .env("SUM_ROOT", root.path())
            .env("INVOCATION_ID", "0123456789abcdef0123456789abcdef");
        match result {
            Some(r) => cmd.env("SERVICE_RESULT", r),
            None => cmd.env_remove("SERVICE_RESULT"),
        };
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    assert_eq!(stopped(Some("success")), (Some(0), String::new()));
    assert!(hook.received().is_empty());
    let (code, text) = stopped(Some("exit-code"));
    assert_eq!(code, Some(0), "{text}");
    let got = hook.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["unit"], "sum-celery@acme.service");
    assert_eq!(got[0]["result"], "exit-code");
    // The queued result was taken: nothing is left to send twice.
    assert!(!root
        .path()
        .join("run/sum/alerts/sum-celery@acme.service.json")
        .exists());
    let (code, text) = stopped(None);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("$SERVICE_RESULT is not set"), "{text}");
}
