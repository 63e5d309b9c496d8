//! The smoke check against a real HTTP server on a unix socket.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use sum::probe::smoke;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(socket: &Path, delay: &str) -> Server {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unix_http.py");
    Server(
        Command::new("python3")
            .arg(script)
            .arg(socket)
            .arg(delay)
            .spawn()
            .expect("python3"),
    )
}

#[test]
fn passes_fails_and_explains_like_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gunicorn.sock");
    let _server = serve(&sock, "0");
    let t = Duration::from_secs(10);
    let host = "acme.example.com";
    assert_eq!(smoke::poll(&sock, host, "/ok", t).unwrap().status, 200);
    assert!(
        smoke::poll(&sock, host, "/html", t).is_ok(),
        "a non-JSON 200 passes"
    );
    assert!(
        smoke::poll(&sock, host, "/chunked", t).is_ok(),
        "degraded, chunked, passes"
    );
    // Host and X-Forwarded-Proto are sent as Caddy would.
    assert!(smoke::poll(&sock, host, "/host", t).is_ok());
    let e = smoke::poll(&sock, "other.example.com", "/host", Duration::from_secs(1))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ALLOWED_HOSTS") && e.contains("other.example.com"),
        "{e}"
    );
    let e = smoke::poll(&sock, host, "/unhealthy", Duration::from_secs(1))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unhealthy") && e.contains("gave up after 1s"),
        "{e}"
    );
    let e = smoke::poll(&sock, host, "/missing", Duration::from_secs(1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("404"), "{e}");
}

#[test]
fn waits_for_a_server_that_comes_up_late_and_gives_up_on_none() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gunicorn.sock");
    let e = smoke::poll(&sock, "h", "/ok", Duration::from_secs(1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no answer on"), "{e}");
    let _server = serve(&sock, "1.5");
    assert!(smoke::poll(&sock, "h", "/ok", Duration::from_secs(15)).is_ok());
}
