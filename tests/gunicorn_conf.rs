//! The package's gunicorn.conf.py (units/gunicorn.conf.py) with real
//! gunicorn from the wheelhouse: a clean stop still runs the app's atexit
//! handlers and flushes the logs although it skips Python's teardown, and
//! a worker that fails to boot still stops gunicorn with an error status.
//! How fast a stop is belongs to benches/deploy.sh, not here.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn conf() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("units/gunicorn.conf.py")
}

/// A virtualenv with gunicorn, installed offline from the wheelhouse.
fn venv(dir: &Path) -> Option<PathBuf> {
    if !common::require_tool("python3") {
        return None;
    }
    let venv = dir.join("venv");
    common::deployfx::venv_with(&venv, &["gunicorn"]);
    Some(venv)
}

/// A venv with gunicorn and an app directory holding one module; gunicorn
/// started from there on a unix socket, with the package's config, its
/// log (stderr) in a file.
struct World {
    _dir: tempfile::TempDir,
    venv: PathBuf,
    app_dir: PathBuf,
    sock: PathBuf,
    log: PathBuf,
}

impl World {
    /// None when python3 is missing outside CI.
    fn new(module: &str, source: &str) -> Option<World> {
        let dir = tempfile::tempdir().unwrap();
        let venv = venv(dir.path())?;
        let app_dir = dir.path().join("app");
        std::fs::create_dir_all(app_dir.join("marks")).unwrap();
        std::fs::write(app_dir.join(format!("{module}.py")), source).unwrap();
        Some(World {
            sock: dir.path().join("g.sock"),
            log: dir.path().join("g.log"),
            _dir: dir,
            venv,
            app_dir,
        })
    }

    fn gunicorn(&self, args: &[&str]) -> Child {
        Command::new(self.venv.join("bin/gunicorn"))
            .args(args)
            .arg("--bind")
            .arg(format!("unix:{}", self.sock.display()))
            .arg("--config")
            .arg(conf())
            .current_dir(&self.app_dir)
            .env("MARK_DIR", self.app_dir.join("marks"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.log).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gunicorn did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const APP: &str = r#"
import atexit, os

def _mark():
    with open(os.path.join(os.environ["MARK_DIR"], str(os.getpid())), "w") as f:
        f.write("atexit ran")

atexit.register(_mark)

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"#;

#[test]
fn a_clean_stop_runs_atexit_handlers_and_flushes_the_logs() {
    let Some(w) = World::new("hello", APP) else {
        return;
    };
    let mut child = w.gunicorn(&["--workers", "2", "--threads", "2", "--preload", "hello:app"]);
    // Both workers answer before the stop.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pids = std::collections::BTreeSet::new();
    while pids.len() < 2 && Instant::now() < deadline {
        if let Ok(r) = sum::smoke::get(&w.sock, "localhost", "/", Duration::from_secs(5)) {
            assert_eq!(r.status, 200);
            pids.insert(r.body);
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(pids.len(), 2, "both workers should have answered");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert!(status.success(), "gunicorn exited with {status}");
    // The master and both workers ran the app's atexit handler.
    let mut marks: Vec<String> = std::fs::read_dir(w.app_dir.join("marks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    marks.sort();
    let mut expected: Vec<String> = pids.into_iter().collect();
    expected.push(child.id().to_string());
    expected.sort();
    assert_eq!(marks, expected);
    // gunicorn's last log lines made it out.
    let err = w.log();
    assert_eq!(err.matches("Worker exiting").count(), 2, "{err}");
    assert!(err.contains("Shutting down: Master"), "{err}");
}

#[test]
fn a_worker_that_fails_to_boot_still_stops_gunicorn_with_an_error() {
    let Some(w) = World::new("broken", "import no_such_module\n") else {
        return;
    };
    // Without --preload the import fails in the workers.
    let mut child = w.gunicorn(&["--workers", "2", "broken:app"]);
    let status = wait_exit(&mut child, Duration::from_secs(60));
    assert!(!status.success(), "gunicorn exited with {status}");
    let err = w.log();
    assert!(err.contains("Worker failed to boot"), "{err}");
}
