//! The package's gunicorn.conf.py (units/gunicorn.conf.py) with real
//! gunicorn from the wheelhouse, once with the oldest and once with the
//! newest gunicorn a deploy accepts (src/deploy/app.rs `GUNICORN`):
//!
//! - gunicorn serves the socket systemd passes it (LISTEN_FDS), also after
//!   a reload (SIGHUP), and its start and stop log no errors (gunicorn
//!   25.1's control socket logged "Control server error" on every start);
//! - without a passed socket it refuses to start, names the socket unit to
//!   restart, and listens nowhere: not on its default 127.0.0.1:8000, not
//!   on $PORT, not where GUNICORN_CMD_ARGS says (a socket unit that came
//!   back from a daemon-reload without its descriptor left a gunicorn on
//!   127.0.0.1:8000 and the site down);
//! - a `--bind` on gunicorn's command line (these tests, the deploy
//!   tests' fixtures) is honoured;
//! - a clean stop still runs the app's atexit handlers and flushes the
//!   logs although it skips Python's teardown, and a worker that fails to
//!   boot still stops gunicorn with an error status.
//!
//! How fast a stop is belongs to benches/deploy.sh, not here.

use crate::common;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sum::deploy::app::{pass_fd, GUNICORN};
use sum::deploy::bridge::{EXEC_WITH_LISTEN_PID, LISTEN_FDS_START};

/// The oldest and the newest gunicorn in [`GUNICORN`], as
/// tests/wheelhouse.sh downloads them.
const OLDEST: &str = "23.0.0";
const NEWEST: &str = "27.0.1";

#[test]
fn the_oldest_accepted_gunicorn() {
    every_check(OLDEST);
}

#[test]
fn the_newest_accepted_gunicorn() {
    every_check(NEWEST);
}

/// A check and what it shows.
type Check = (&'static str, fn(&Venv));

/// One venv per version (building one takes seconds), every check on it.
fn every_check(version: &str) {
    let Some(venv) = Venv::install(version) else {
        return;
    };
    let checks: [Check; 5] = [
        (
            "a passed socket is served and the log has no errors",
            a_passed_socket_is_served_and_the_log_has_no_errors,
        ),
        (
            "without a passed socket it refuses to start and listens nowhere",
            without_a_passed_socket_it_refuses_to_start_and_listens_nowhere,
        ),
        (
            "a --bind on the command line is honoured",
            a_bind_on_the_command_line_is_honoured,
        ),
        (
            "a clean stop runs atexit handlers and flushes the logs",
            a_clean_stop_runs_atexit_handlers_and_flushes_the_logs,
        ),
        (
            "a worker that fails to boot still stops gunicorn with an error",
            a_worker_that_fails_to_boot_still_stops_gunicorn_with_an_error,
        ),
    ];
    for (name, check) in checks {
        eprintln!("gunicorn {version}: {name}");
        check(&venv);
    }
}

fn conf() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("units/gunicorn.conf.py")
}

/// A virtualenv with one gunicorn, installed offline from the wheelhouse
/// with the requirement a deploy adds ([`GUNICORN`]), so a version outside
/// the range fails here.
struct Venv {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Venv {
    /// None when python3 is missing outside CI.
    fn install(version: &str) -> Option<Venv> {
        if !common::require_tool("python3") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("venv");
        // The newest: what pip picks for the range from the wheelhouse,
        // as a deploy does. The oldest: the range and the pin together.
        let pin = format!("gunicorn=={version}");
        let mut packages = vec![GUNICORN];
        if version != NEWEST {
            packages.push(&pin);
        }
        common::deployfx::venv_with(&path, &packages);
        let out = Command::new(path.join("bin/python"))
            .args(["-c", "import gunicorn; print(gunicorn.__version__)"])
            .output()
            .unwrap();
        let installed = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            installed, version,
            "pip installed gunicorn {installed:?} for {packages:?}"
        );
        Some(Venv { _dir: dir, path })
    }
}

/// How gunicorn gets its listening socket.
#[derive(Clone, Copy)]
enum Listen {
    /// As sum-gunicorn@.service: bound here, passed at fd 3 with
    /// LISTEN_FDS and LISTEN_PID, no --bind.
    Systemd,
    /// `--bind unix:…` on the command line.
    Bind,
    /// Neither: systemd passed nothing.
    Nothing,
}

/// An app directory holding one module, a home, and gunicorn started from
/// there with the package's config, its log (stderr) in a file.
struct World<'v> {
    venv: &'v Venv,
    dir: tempfile::TempDir,
    app_dir: PathBuf,
    sock: PathBuf,
    log: PathBuf,
}

impl<'v> World<'v> {
    fn new(venv: &'v Venv, module: &str, source: &str) -> World<'v> {
        let dir = tempfile::tempdir().unwrap();
        let app_dir = dir.path().join("app");
        std::fs::create_dir_all(app_dir.join("marks")).unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::write(app_dir.join(format!("{module}.py")), source).unwrap();
        World {
            venv,
            sock: dir.path().join("g.sock"),
            log: dir.path().join("g.log"),
            app_dir,
            dir,
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn command(&self, listen: Listen, args: &[&str], env: &[(&str, &str)]) -> Command {
        let gunicorn = self.venv.path.join("bin/gunicorn");
        let mut cmd = match listen {
            Listen::Systemd => {
                let mut cmd = Command::new("/bin/sh");
                cmd.arg("-c").arg(EXEC_WITH_LISTEN_PID).arg(&gunicorn);
                cmd
            }
            Listen::Bind | Listen::Nothing => Command::new(&gunicorn),
        };
        cmd.args(args);
        if let Listen::Bind = listen {
            cmd.arg("--bind")
                .arg(format!("unix:{}", self.sock.display()));
        }
        // The unit's environment: its own variables, a home gunicorn cannot
        // use for anything, none of the caller's gunicorn settings.
        cmd.arg("--config")
            .arg(conf())
            .current_dir(&self.app_dir)
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_FDNAMES")
            .env_remove("GUNICORN_CMD_ARGS")
            .env_remove("PORT")
            .env_remove("XDG_RUNTIME_DIR")
            .env("HOME", self.home())
            .env("SUM_SITE", "acme")
            .env("MARK_DIR", self.app_dir.join("marks"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.log).unwrap())
            .stdin(Stdio::null());
        cmd
    }

    /// gunicorn with `args`; with [`Listen::Systemd`] the listener lives
    /// as long as the returned process.
    fn gunicorn(&self, listen: Listen, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut cmd = self.command(listen, args, env);
        let listener = match listen {
            Listen::Systemd => {
                let _ = std::fs::remove_file(&self.sock);
                let listener = UnixListener::bind(&self.sock).unwrap();
                let fd = listener.as_raw_fd();
                // SAFETY: pass_fd is async-signal-safe.
                unsafe {
                    cmd.pre_exec(move || pass_fd(fd, LISTEN_FDS_START));
                }
                Some(listener)
            }
            Listen::Bind | Listen::Nothing => None,
        };
        Running {
            child: Some(cmd.spawn().unwrap()),
            _listener: listener,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// GETs `/` until `n` different workers (pids in the body) that are
    /// not among `old` answered.
    fn answers_from(&self, n: usize, old: &BTreeSet<String>) -> BTreeSet<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut pids = BTreeSet::new();
        while pids.len() < n && Instant::now() < deadline {
            match sum::probe::smoke::get(&self.sock, "localhost", "/", Duration::from_secs(5)) {
                Ok(r) => {
                    assert_eq!(r.status, 200, "{}", self.log());
                    if !old.contains(&r.body) {
                        pids.insert(r.body);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        assert_eq!(pids.len(), n, "workers that answered; log:\n{}", self.log());
        pids
    }
}

/// A gunicorn that is killed if a check fails while it runs.
struct Running {
    child: Option<Child>,
    _listener: Option<UnixListener>,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal).unwrap();
    }

    fn sigterm(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// Whether it is still running.
    fn running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return s;
            }
            if Instant::now() > deadline {
                panic!("gunicorn did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Lines of gunicorn's log that report a problem.
fn error_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.contains("[ERROR]")
                || l.contains("[CRITICAL]")
                || l.contains("Traceback")
                || l.contains("Control server error")
        })
        .collect()
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

/// The unit's way: the socket from systemd, the unit's options. A reload
/// (SIGHUP) reads the conf again, long after systemd's variables are gone:
/// the new workers serve the same socket.
fn a_passed_socket_is_served_and_the_log_has_no_errors(venv: &Venv) {
    let w = World::new(venv, "hello", APP);
    let mut g = w.gunicorn(
        Listen::Systemd,
        &["--workers", "2", "--threads", "2", "--preload", "hello:app"],
        &[],
    );
    let before = w.answers_from(2, &BTreeSet::new());
    g.signal(Signal::SIGHUP);
    w.answers_from(2, &before);
    assert!(g.running(), "{}", w.log());
    g.sigterm();
    let status = g.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "gunicorn exited with {status}");
    let log = w.log();
    assert!(
        log.contains(&format!("Listening at: unix:{}", w.sock.display())),
        "{log}"
    );
    assert!(error_lines(&log).is_empty(), "errors in the log:\n{log}");
    // No control socket (gunicorn >= 25.1) under the home, nor anywhere.
    assert!(!w.home().join(".gunicorn").exists(), "{log}");
}

/// What a socket unit that came back without its descriptor gives gunicorn:
/// nothing. Also with the addresses gunicorn would otherwise take from the
/// environment.
fn without_a_passed_socket_it_refuses_to_start_and_listens_nowhere(venv: &Venv) {
    let w = World::new(venv, "hello", APP);
    let port = free_port().to_string();
    let cmd_args = format!("--bind 127.0.0.1:{}", free_port());
    let cases: [&[(&str, &str)]; 3] = [
        &[],
        &[("PORT", port.as_str())],
        &[("GUNICORN_CMD_ARGS", cmd_args.as_str())],
    ];
    for env in cases {
        let mut watched: Vec<SocketAddr> = env
            .iter()
            .filter_map(|(_, v)| v.rsplit(':').next()?.parse::<u16>().ok())
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        // gunicorn's default, unless something else on this machine has it.
        let default = SocketAddr::from(([127, 0, 0, 1], 8000));
        if !listens(default) {
            watched.push(default);
        }
        let mut g = w.gunicorn(Listen::Nothing, &["--workers", "1", "hello:app"], env);
        let deadline = Instant::now() + Duration::from_secs(20);
        while g.running() {
            assert!(
                Instant::now() < deadline,
                "gunicorn still runs without a socket ({env:?}):\n{}",
                w.log()
            );
            for a in &watched {
                assert!(
                    !listens(*a),
                    "gunicorn listens on {a} ({env:?}):\n{}",
                    w.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let status = g.wait_exit(Duration::ZERO);
        let log = w.log();
        assert!(
            !status.success(),
            "gunicorn exited with {status} ({env:?}):\n{log}"
        );
        assert!(
            log.contains("systemd passed no listening socket")
                && log.contains("systemctl restart sum-gunicorn@acme.socket"),
            "{env:?}:\n{log}"
        );
        assert!(!log.contains("Listening at"), "{env:?}:\n{log}");
        assert!(!log.contains("Booting worker"), "{env:?}:\n{log}");
    }
}

/// A port nothing listens on at the moment.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn listens(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
}

/// The tests (here and the deploy tests' fixtures) and runs by hand.
fn a_bind_on_the_command_line_is_honoured(venv: &Venv) {
    let w = World::new(venv, "hello", APP);
    let mut g = w.gunicorn(Listen::Bind, &["--workers", "1", "hello:app"], &[]);
    w.answers_from(1, &BTreeSet::new());
    g.sigterm();
    let status = g.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "gunicorn exited with {status}");
    let log = w.log();
    assert!(error_lines(&log).is_empty(), "errors in the log:\n{log}");
}

fn a_clean_stop_runs_atexit_handlers_and_flushes_the_logs(venv: &Venv) {
    let w = World::new(venv, "hello", APP);
    let mut g = w.gunicorn(
        Listen::Systemd,
        &["--workers", "2", "--threads", "2", "--preload", "hello:app"],
        &[],
    );
    // Both workers answer before the stop.
    let pids = w.answers_from(2, &BTreeSet::new());
    let master = g.pid();
    g.sigterm();
    let status = g.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "gunicorn exited with {status}");
    // The master and both workers ran the app's atexit handler.
    let mut marks: Vec<String> = std::fs::read_dir(w.app_dir.join("marks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    marks.sort();
    let mut expected: Vec<String> = pids.into_iter().collect();
    expected.push(master.to_string());
    expected.sort();
    assert_eq!(marks, expected);
    // gunicorn's last log lines made it out.
    let err = w.log();
    assert_eq!(err.matches("Worker exiting").count(), 2, "{err}");
    assert!(err.contains("Shutting down: Master"), "{err}");
}

fn a_worker_that_fails_to_boot_still_stops_gunicorn_with_an_error(venv: &Venv) {
    let w = World::new(venv, "broken", "import no_such_module\n");
    // Without --preload the import fails in the workers.
    let mut g = w.gunicorn(Listen::Systemd, &["--workers", "2", "broken:app"], &[]);
    let status = g.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "gunicorn exited with {status}");
    let err = w.log();
    assert!(err.contains("Worker failed to boot"), "{err}");
}
