//! The deploy preflight's Redis PING against a real redis-server.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(port: u16, password: Option<&str>) -> Redis {
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    if let Some(pw) = password {
        cmd.args(["--requirepass", pw]);
    }
    let r = Redis(cmd.stdout(Stdio::null()).spawn().expect("redis-server"));
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    r
}

#[test]
fn ping_passes_fails_and_says_what_to_fix() {
    if !common::require_tool("redis-server") {
        return;
    }
    let t = Duration::from_secs(3);
    let port = free_port();
    let _open = start(port, None);
    sum::redisping::ping(&format!("redis://127.0.0.1:{port}/0"), t).unwrap();

    let port = free_port();
    let _locked = start(port, Some("s3cret"));
    sum::redisping::ping(&format!("redis://:s3cret@127.0.0.1:{port}/0"), t).unwrap();
    let e = sum::redisping::ping(&format!("redis://:wrong@127.0.0.1:{port}/0"), t).unwrap_err();
    assert!(e.contains("refused the password"), "{e}");
    let e = sum::redisping::ping(&format!("redis://127.0.0.1:{port}/0"), t).unwrap_err();
    assert!(e.contains("NOAUTH"), "{e}");

    let e = sum::redisping::ping(&format!("redis://127.0.0.1:{}/0", free_port()), t).unwrap_err();
    assert!(
        e.contains("does not answer") && e.contains("systemctl status redis-server"),
        "{e}"
    );
}
