//! Where an alert goes (`sumctl alert`, src/ctl/alert.rs): the webhook, as
//! one JSON document, and mail through `sendmail`. Errors never show the
//! webhook's URL: it may carry a token.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::system::failure::Failure;

/// Posts the document; an error says what went wrong without the URL.
pub fn post(url: &str, body: &str) -> Result<(), String> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .build();
    let request = agent.post(url).set("Content-Type", "application/json");
    match request.send_string(body) {
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(code, _)) => Err(format!(
            "the webhook answered HTTP {code}: check SUM_ALERT_WEBHOOK"
        )),
        Err(ureq::Error::Transport(t)) => Err(format!(
            "the webhook could not be reached ({}): check SUM_ALERT_WEBHOOK and the \
             host's network",
            t.kind()
        )),
    }
}

/// Hands the mail to `sendmail -oi -t`.
pub fn mail(sendmail: &Path, text: &str) -> Result<(), String> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(sendmail)
        .args(["-oi", "-t"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run {}: {e}", sendmail.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("{} did not take the mail: {e}", sendmail.display()))?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed ({}): {}",
            sendmail.display(),
            out.status,
            crate::system::text::last_lines(&String::from_utf8_lossy(&out.stderr), 3, 300)
        ))
    }
}

/// Delivers to every configured destination; Ok names where it went. Fails
/// only when nothing could be delivered.
pub fn deliver(
    to: &Destinations,
    msg: &Message,
    err: &mut dyn Write,
) -> Result<Vec<String>, Failure> {
    let mut reached = Vec::new();
    let mut failures = Vec::new();
    if let Some(url) = to.webhook {
        match post(url, &msg.json) {
            Ok(()) => reached.push("the webhook".to_string()),
            Err(e) => failures.push(e),
        }
    }
    if !to.email.is_empty() {
        if to.sendmail.exists() {
            match mail(to.sendmail, &msg.mail) {
                Ok(()) => reached.push(to.email.join(", ")),
                Err(e) => failures.push(e),
            }
        } else {
            failures.push(format!(
                "SUM_ALERT_EMAIL is set but {} does not exist: install a mail transfer \
                 agent (e.g. `apt install msmtp-mta`)",
                to.sendmail.display()
            ));
        }
    }
    for f in &failures {
        let _ = writeln!(err, "sumctl alert: {f}");
    }
    if reached.is_empty() && !failures.is_empty() {
        return Err(Failure::failed(format!(
            "the alert about {} reached no destination",
            msg.unit
        )));
    }
    Ok(reached)
}

/// Where one alert goes.
pub struct Destinations<'a> {
    pub webhook: Option<&'a str>,
    pub email: &'a [String],
    pub sendmail: &'a Path,
}

/// One alert, ready to go: the JSON document and the whole mail.
pub struct Message {
    pub unit: String,
    pub json: String,
    pub mail: String,
}
