//! The deploy preflight's Redis PING against a real redis-server.

use crate::common;

use std::time::Duration;

use common::redis::{free_port, Redis};

fn start(port: u16, password: Option<&str>) -> Redis {
    Redis::start_on(port, password)
}

#[test]
fn ping_passes_fails_and_says_what_to_fix() {
    if !common::require_tool("redis-server") {
        return;
    }
    let t = Duration::from_secs(3);
    let port = free_port();
    let _open = start(port, None);
    sum::probe::redis::ping(&format!("redis://127.0.0.1:{port}/0"), t).unwrap();

    let port = free_port();
    let _locked = start(port, Some("s3cret"));
    sum::probe::redis::ping(&format!("redis://:s3cret@127.0.0.1:{port}/0"), t).unwrap();
    let e = sum::probe::redis::ping(&format!("redis://:wrong@127.0.0.1:{port}/0"), t).unwrap_err();
    assert!(e.contains("refused the password"), "{e}");
    let e = sum::probe::redis::ping(&format!("redis://127.0.0.1:{port}/0"), t).unwrap_err();
    assert!(e.contains("NOAUTH"), "{e}");

    let e =
        sum::probe::redis::ping(&format!("redis://127.0.0.1:{}/0", free_port()), t).unwrap_err();
    assert!(
        e.contains("does not answer") && e.contains("systemctl status redis-server"),
        "{e}"
    );
}
