//! The bridge (src/deploy/bridge.rs) with real gunicorn, Django, PostgreSQL
//! and Redis: the deploy gets the site's listening socket as systemd passes
//! it (`Sockets=` in sum-deploy@.service), and a control that, like
//! systemd, holds the socket across restarts and hands it to gunicorn
//! through LISTEN_FDS. A request sent while the old gunicorn is gone and
//! before the new one starts is answered only if the bridge serves; without
//! the socket nothing would answer it until the new gunicorn is up. What
//! the bridge's gunicorn prints is in the deploy's log, marked as the
//! app's. A bridge whose sum-deploy dies stops gracefully.

use crate::common;

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::deployfx::{self, Fixture, DOMAIN};
use sum::config::site::Site;
use sum::deploy::app::pass_fd;
use sum::deploy::bridge::{EXEC_WITH_LISTEN_PID, LISTEN_FDS_START};
use sum::deploy::{Options, Outcome};
use sum::system::control::Control;

/// What a GET in the middle of a restart got: status and `release`, or
/// the error.
type MidRestart = Result<(u16, String), String>;

/// Runs gunicorn as sum-gunicorn@.service does, on a socket it holds.
struct SocketControl {
    listener: UnixListener,
    home: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// GETs of /health/ made after each stop, before each start.
    mid_restart: Vec<MidRestart>,
}

impl SocketControl {
    fn new(fx: &Fixture) -> SocketControl {
        // The package's gunicorn.conf.py where the bridge looks for it.
        let conf = fx.sum_root().path(sum::config::layout::GUNICORN_CONF);
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        std::fs::copy(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("units/gunicorn.conf.py"),
            conf,
        )
        .unwrap();
        let sock = fx.sum_root().path("/run/sum/acme/gunicorn.sock");
        std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&sock);
        SocketControl {
            listener: UnixListener::bind(&sock).unwrap(),
            home: fx.home(),
            env: fx.env.clone(),
            child: None,
            mid_restart: Vec::new(),
        }
    }

    fn kill(&mut self) {
        deployfx::stop_gracefully(&mut self.child);
    }

    /// A deploy of `r` that gets the socket, as through the unit.
    fn deploy(&mut self, fx: &Fixture, r: &str) -> (Outcome, String) {
        self.deploy_with(fx, r, true)
    }

    /// A deploy of `r`; `pass_socket` false is sum-deploy run by hand.
    fn deploy_with(&mut self, fx: &Fixture, r: &str, pass_socket: bool) -> (Outcome, String) {
        let site = fx.site();
        let root = fx.sum_root();
        let opts = Options {
            git_ref: Some(r.to_string()),
            no_restart: false,
        };
        // A clone of the listener: the deploy's own copy, as systemd
        // passes one to sum-deploy.
        let passed = self.listener.try_clone().unwrap();
        let ctx = sum::deploy::Ctx {
            root: &root,
            site: &site,
            opts: &opts,
            account: None,
            listener: pass_socket.then(|| passed.as_fd()),
        };
        let mut out = Vec::new();
        let outcome = sum::deploy::deploy(&ctx, self, &mut out);
        (outcome, String::from_utf8_lossy(&out).into_owned())
    }
}

impl Drop for SocketControl {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Control for SocketControl {
    fn manages_services(&self) -> bool {
        true
    }
    fn restart(&mut self, site: &Site) -> Result<(), String> {
        let restarting = self.child.is_some();
        self.kill();
        if restarting {
            // The unit is down: only a bridge can answer.
            let got = sum::probe::smoke::get(
                &self.socket(site),
                DOMAIN,
                "/health/",
                Duration::from_secs(8),
            )
            .map_err(|e| e.to_string())
            .map(|r| {
                let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
                (r.status, v["release"].as_str().unwrap_or("?").to_string())
            });
            self.mid_restart.push(got);
        }
        let fd = self.listener.as_raw_fd();
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(EXEC_WITH_LISTEN_PID)
            .arg(self.home.join("venv/bin/gunicorn"))
            .args(deployfx::gunicorn_args(site))
            .current_dir(self.home.join("app"))
            .env_clear()
            .envs(deployfx::unit_env(&self.home, &self.env, site))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null());
        // SAFETY: pass_fd is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || pass_fd(fd, LISTEN_FDS_START));
        }
        self.child = Some(cmd.spawn().map_err(|e| format!("gunicorn: {e}"))?);
        Ok(())
    }
    fn stop(&mut self, _: &Site) -> Result<(), String> {
        self.kill();
        Ok(())
    }
    fn socket(&self, _: &Site) -> PathBuf {
        self.listener
            .local_addr()
            .unwrap()
            .as_pathname()
            .unwrap()
            .to_path_buf()
    }
}

/// The pid in the log's "bridge: ... (pid N)" line.
fn bridge_pid(log: &str) -> i32 {
    let line = log
        .lines()
        .find(|l| l.contains("bridge: a gunicorn of releases/"))
        .unwrap_or_else(|| panic!("no bridge started:\n{log}"));
    let pid = line
        .split("(pid ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    pid.parse().unwrap()
}

/// The lines of `step` in the log, from `==> step` to its result.
fn step_lines<'l>(log: &'l str, step: &str) -> Vec<&'l str> {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines.iter().position(|l| *l == format!("==> {step}"));
    let start = start.unwrap_or_else(|| panic!("no step {step}:\n{log}"));
    let end = lines[start..]
        .iter()
        .position(|l| l.starts_with(&format!("    {step}: ")))
        .unwrap_or_else(|| panic!("no result of {step}:\n{log}"));
    lines[start..=start + end].to_vec()
}

/// The mark of the app's lines in the deploy's log.
const APP: &str = "    app| ";

/// The log's lines marked as the app's, and the deploy's own.
fn app_and_ours(log: &str) -> (Vec<&str>, Vec<&str>) {
    assert_eq!(sum::deploy::relay::MARK, APP);
    log.lines().partition(|l| l.starts_with(APP))
}

fn running(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[test]
fn the_live_release_answers_while_the_unit_restarts() {
    let Some(fx) = Fixture::new("") else {
        return;
    };
    let mut control = SocketControl::new(&fx);

    // A first deploy has nothing live to bridge with.
    let (o, log) = control.deploy(&fx, "v1");
    println!("{log}");
    assert_eq!(o.code, 0, "{log}");
    assert!(!log.contains("bridge:"), "{log}");
    // Nothing of the app's was relayed, so nothing is marked.
    assert!(!log.contains(APP.trim()), "{log}");
    let v1 = fx.live().unwrap();
    assert_eq!(fx.serving_version(), "v1");

    // v2: while the unit is down, v1 answers from the bridge; the bridge
    // is gone before the smoke check, which reaches v2. With a SECRET_KEY
    // that `check --deploy` finds too short: its warning is the app's too.
    let short: Vec<(String, String)> = fx
        .env
        .iter()
        .map(|(k, v)| match k.as_str() {
            "SECRET_KEY" => (k.clone(), "short-but-not-empty".to_string()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    fx.write_env(&short);
    let (o, log) = control.deploy(&fx, "v2");
    fx.write_env(&fx.env);
    println!("{log}");
    assert_eq!(o.code, 0, "{log}");
    let check = step_lines(&log, "check");
    let warned = check
        .iter()
        .position(|l| *l == "    warning: `manage.py check --deploy` reported 1 warning(s):");
    let w009 = check.iter().position(|l| {
        l.starts_with("    app| ?: (security.W009) Your SECRET_KEY has less than 50")
    });
    assert!(warned.is_some() && warned < w009, "{log}");
    assert!(
        log.contains(&format!("bridge: a gunicorn of releases/{v1} (pid")),
        "{log}"
    );
    assert_eq!(control.mid_restart, vec![Ok((200, "v1".to_string()))]);
    let pid = bridge_pid(&log);
    let stopped = log.find(&format!("bridge: pid {pid} stopped (exit status: 0)"));
    let smoke = log.find("==> smoke");
    assert!(
        stopped.is_some() && stopped < smoke,
        "the bridge must stop before the smoke check:\n{log}"
    );
    assert!(!running(pid), "the bridge (pid {pid}) still runs");
    the_bridges_lines_are_marked_inside_the_steps(&log, pid);
    assert_eq!(fx.serving_version(), "v2");
    // The bridge left the socket where it was.
    assert!(control.socket(&fx.site()).exists());

    // v4 fails its smoke check: the bridge (v2) covered the restart to v4
    // and was stopped before the check, which saw v4 and rolled back.
    control.mid_restart.clear();
    let (o, log) = control.deploy(&fx, "v4");
    println!("{log}");
    assert_eq!(o.code, 4, "{log}");
    let pid = bridge_pid(&log);
    assert!(!running(pid), "the bridge (pid {pid}) still runs");
    // The rollback's own restart (v4 to v2) is not bridged.
    assert_eq!(control.mid_restart.len(), 2, "{:?}", control.mid_restart);
    assert_eq!(control.mid_restart[0], Ok((200, "v2".to_string())));
    assert!(control.mid_restart[1].is_err(), "{:?}", control.mid_restart);
    assert_eq!(fx.serving_version(), "v2");
}

/// What the bridge's gunicorn printed, on its stdout (the access log) and
/// its stderr (its error log), is in the deploy's log, each line marked
/// and between the lines that start and stop the bridge; none of the
/// deploy's own lines is marked.
fn the_bridges_lines_are_marked_inside_the_steps(log: &str, pid: i32) {
    let (app, ours) = app_and_ours(log);
    for said in [
        format!("[{pid}] [INFO] Starting gunicorn "),
        format!("[{pid}] [INFO] Shutting down: Master"),
        // The request the bridge answered while the unit was down.
        "\"GET /health/ HTTP/1.1\" 200".to_string(),
    ] {
        assert!(app.iter().any(|l| l.contains(&said)), "{said}:\n{log}");
    }
    assert!(
        ours.iter()
            .all(|l| !l.contains("[INFO]") && !l.contains("HTTP/1.1")),
        "an unmarked line of gunicorn's:\n{log}"
    );
    assert!(
        ours.iter().any(|l| l.starts_with("==> check"))
            && ours.iter().any(|l| l.starts_with("    check: passed"))
            && ours.iter().any(|l| l.starts_with("    restart: ")),
        "{log}"
    );
    let lines: Vec<&str> = log.lines().collect();
    let at = |what: &str| lines.iter().position(|l| l.contains(what)).unwrap();
    let (started, stopped) = (
        at("bridge: a gunicorn of releases/"),
        at(&format!("bridge: pid {pid} stopped")),
    );
    let first = lines.iter().position(|l| l.starts_with(APP)).unwrap();
    let last = lines.iter().rposition(|l| l.starts_with(APP)).unwrap();
    assert!(started < first && last < stopped, "{log}");
}

#[test]
fn without_the_socket_a_restart_is_not_bridged() {
    let Some(fx) = Fixture::new("") else {
        return;
    };
    let mut control = SocketControl::new(&fx);
    let (o, log) = control.deploy(&fx, "v1");
    assert_eq!(o.code, 0, "{log}");
    // As sumctl rollback or sum-deploy run by hand: no passed socket.
    let (o, log) = control.deploy_with(&fx, "v2", false);
    assert_eq!(o.code, 0, "{log}");
    assert!(!log.contains("bridge:"), "{log}");
    // Nothing answered while the unit was down.
    assert_eq!(control.mid_restart.len(), 1);
    assert!(control.mid_restart[0].is_err(), "{:?}", control.mid_restart);
    assert_eq!(fx.serving_version(), "v2");
}

#[test]
fn a_bridge_whose_deploy_dies_stops_gracefully() {
    let Some(fx) = Fixture::new("") else {
        return;
    };
    let mut control = SocketControl::new(&fx);
    let (o, log) = control.deploy(&fx, "v1");
    assert_eq!(o.code, 0, "{log}");
    let site = fx.site();
    control.stop(&site).unwrap();
    let home = fx.home();
    let release = std::fs::canonicalize(home.join("app")).unwrap();
    let venv = std::fs::canonicalize(home.join("venv")).unwrap();
    let conf = fx.sum_root().path(sum::config::layout::GUNICORN_CONF);
    let env = deployfx::unit_env(&home, &fx.env, &site);
    let runner = sum::deploy::app::Runner { run_as: None, env };
    let socket = control.socket(&site);
    let listener = control.listener.try_clone().unwrap();

    // The parent-death signal follows the thread that started the bridge:
    // a thread that ends stands in for a sum-deploy that dies.
    let pid = std::thread::scope(|s| {
        s.spawn(|| {
            let b = sum::deploy::bridge::Bridge::start(
                &runner,
                &site,
                listener.as_fd(),
                &release,
                &venv,
                &conf,
                std::io::stderr().as_fd().try_clone_to_owned().unwrap(),
            )
            .unwrap();
            // The unit is stopped: only the bridge answers.
            let r = sum::probe::smoke::get(&socket, DOMAIN, "/health/", Duration::from_secs(60))
                .unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
            let pid = b.pid();
            std::mem::forget(b);
            pid
        })
        .join()
        .unwrap()
    });
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        match nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)).unwrap() {
            nix::sys::wait::WaitStatus::StillAlive if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            other => break other,
        }
    };
    // SIGTERM, handled as a graceful stop: exit status 0, not killed.
    assert_eq!(status, nix::sys::wait::WaitStatus::Exited(pid, 0));
}
