//! Dead-man's-switch pings (healthchecks.io style) around a backup:
//! `<url>/start` when it begins, `<url>` on success, `<url>/fail` on failure.
//! A ping that fails is reported and never fails the backup itself.

use std::time::Duration;

/// Which ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Start,
    Success,
    Fail,
}

/// The URL a ping goes to.
pub fn url_for(base: &str, event: Event) -> String {
    let base = base.trim_end_matches('/');
    match event {
        Event::Start => format!("{base}/start"),
        Event::Success => base.to_string(),
        Event::Fail => format!("{base}/fail"),
    }
}

/// Sends one ping with `body` (shown by the monitoring service); returns a
/// warning on failure instead of an error.
pub fn send(base: &str, event: Event, body: &str) -> Result<(), String> {
    let url = url_for(base, event);
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build();
    match agent.post(&url).send_string(body) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "ping {url} failed (the backup is not affected): {e}"
        )),
    }
}
