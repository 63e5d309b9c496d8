//! The smoke check against a real HTTP server on a unix socket. The rules
//! that end the wait early are shown by how many requests the server got,
//! never by the clock.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use sum::probe::smoke::{self, Failed};
use sum::probe::wait;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(socket: &Path, delay: &str) -> Server {
    serve_logged(socket, delay, Path::new("/dev/null"))
}

fn serve_logged(socket: &Path, delay: &str, log: &Path) -> Server {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unix_http.py");
    Server(
        Command::new("python3")
            .arg(script)
            .arg(socket)
            .arg(delay)
            .arg(log)
            .spawn()
            .expect("python3"),
    )
}

/// A server whose requests are logged, for [`Counted::requests`].
struct Counted {
    _dir: tempfile::TempDir,
    _server: Server,
    socket: PathBuf,
    log: PathBuf,
}

impl Counted {
    fn start() -> Counted {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("gunicorn.sock");
        let log = dir.path().join("requests.log");
        let server = serve_logged(&socket, "0", &log);
        Counted {
            _server: server,
            socket,
            log,
            _dir: dir,
        }
    }

    /// How many requests of `path` the server answered.
    fn requests(&self, path: &str) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines().filter(|l| *l == path).count()
    }

    fn poll(&self, path: &str) -> Result<smoke::Response, Failed> {
        wait::poll(&self.socket, HOST, path, LONG)
    }
}

const HOST: &str = "acme.example.com";
/// Longer than any of these tests may take: a check that ends early ends
/// on an answer, not on this.
const LONG: Duration = Duration::from_secs(120);

#[test]
fn passes_fails_and_explains_like_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gunicorn.sock");
    let _server = serve(&sock, "0");
    let t = Duration::from_secs(10);
    let host = "acme.example.com";
    assert_eq!(wait::poll(&sock, host, "/ok", t).unwrap().status, 200);
    assert!(
        wait::poll(&sock, host, "/html", t).is_ok(),
        "a non-JSON 200 passes"
    );
    assert!(
        wait::poll(&sock, host, "/chunked", t).is_ok(),
        "degraded, chunked, passes"
    );
    // Host and X-Forwarded-Proto are sent as Caddy would.
    assert!(wait::poll(&sock, host, "/host", t).is_ok());
    let e = wait::poll(&sock, "other.example.com", "/host", Duration::from_secs(1))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ALLOWED_HOSTS") && e.contains("other.example.com"),
        "{e}"
    );
    let e = wait::poll(&sock, host, "/unhealthy", Duration::from_secs(1))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unhealthy") && e.contains("gave up after 1s"),
        "{e}"
    );
    let e = wait::poll(&sock, host, "/missing", Duration::from_secs(1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("404"), "{e}");
}

#[test]
fn waits_for_a_server_that_comes_up_late_and_gives_up_on_none() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gunicorn.sock");
    let e = wait::poll(&sock, "h", "/ok", Duration::from_secs(1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no answer on"), "{e}");
    let _server = serve(&sock, "1.5");
    assert!(wait::poll(&sock, "h", "/ok", Duration::from_secs(15)).is_ok());
}

#[test]
fn a_redirect_passes_at_once_and_says_where_it_points() {
    let server = Counted::start();
    let r = server.poll("/status/302").unwrap();
    assert_eq!(r.status, 302);
    assert_eq!(server.requests("/status/302"), 1);
    let said = wait::describe_passes(&[("/status/302", r)], "the socket");
    assert_eq!(
        said,
        "GET /status/302 over the socket answered 302 (a redirect to /accounts/login/?next=/)"
    );
}

#[test]
fn a_redirect_to_the_path_itself_fails_at_once() {
    let server = Counted::start();
    let e = server.poll("/loop").unwrap_err();
    assert!(matches!(e, Failed::RedirectLoop { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("a redirect to itself (https://acme.example.com/loop)"),
        "{e}"
    );
    assert_eq!(server.requests("/loop"), 1);
}

#[test]
fn a_client_error_fails_at_the_first_answer() {
    let server = Counted::start();
    for status in ["404", "401", "403"] {
        let path = format!("/status/{status}");
        let e = server.poll(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{path} answered {status}: status {status}")
        );
        assert_eq!(server.requests(&path), 1, "{path}");
    }
    // A 400 too, with its ALLOWED_HOSTS hint.
    let e = wait::poll(&server.socket, "other.example.com", "/host", LONG).unwrap_err();
    assert!(
        e.is_bad_request() && e.to_string().contains("other.example.com"),
        "{e}"
    );
    assert_eq!(server.requests("/host"), 1);
}

#[test]
fn a_server_error_fails_when_it_comes_three_times_in_a_row() {
    let server = Counted::start();
    let e = server.poll("/status/500").unwrap_err();
    assert_eq!(
        e.to_string(),
        "/status/500 answered 500: Server Error (500) (3 times in a row)"
    );
    assert_eq!(server.requests("/status/500"), 3);
    // Two, then a pass: the app recovered.
    assert!(server.poll("/sequence/500,500,200").is_ok());
    assert_eq!(server.requests("/sequence/500,500,200"), 3);
}

#[test]
fn unavailable_and_too_many_requests_are_asked_again_until_they_pass() {
    let server = Counted::start();
    let r = server.poll("/sequence/503,503,200").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(server.requests("/sequence/503,503,200"), 3);
    // More 503s than a run of server errors may have: still asked again.
    assert!(server.poll("/sequence/503,503,503,503,200").is_ok());
    assert_eq!(server.requests("/sequence/503,503,503,503,200"), 5);
    assert!(server.poll("/sequence/429,200").is_ok());
    assert_eq!(server.requests("/sequence/429,200"), 2);
}

#[test]
fn every_path_is_checked_and_a_failing_one_is_named() {
    let server = Counted::start();
    let paths = ["/ok", "/status/302", "/status/500"];
    let e = wait::poll_paths(&server.socket, HOST, paths, LONG).unwrap_err();
    assert_eq!(e.path(), Some("/status/500"));
    assert!(
        e.to_string().starts_with("/status/500 answered 500: "),
        "{e}"
    );
    assert_eq!(
        paths.map(|p| server.requests(p)),
        [1, 1, 3],
        "each path asked until it passed or failed, in order"
    );
    let passes = wait::poll_paths(&server.socket, HOST, ["/ok", "/status/302"], LONG).unwrap();
    assert_eq!(
        wait::describe_passes(&passes, "the socket"),
        "GET /ok over the socket answered 200; \
         GET /status/302 answered 302 (a redirect to /accounts/login/?next=/)"
    );
}
