//! The bridge: a second gunicorn of the live release that serves from the
//! site's socket while the gunicorn unit restarts.
//!
//! A restart stops the old gunicorn before the new one can start, because
//! one unit owns the socket. Requests queue in the socket's backlog for
//! that stop and the new gunicorn's boot, so none fail, but they wait.
//! `sum-deploy@.service` lists the site's socket in `Sockets=`, so systemd
//! passes sum-deploy the same listening socket (the same file descriptor
//! may be passed to several processes). sum-deploy starts a gunicorn of
//! the release that is live, from its own directory and venv, on that
//! socket, while the new release is checked; the kernel hands each
//! connection to whichever gunicorn accepts it. The unit restarts to the
//! new release while the bridge keeps answering; once the unit is up the
//! bridge is stopped gracefully, before the smoke check, so the smoke
//! check reaches only the new release.
//!
//! The bridge runs as the site's user with the units' environment, the
//! gunicorn unit's arguments and its umask, and stops (SIGTERM) when
//! sum-deploy dies, and with the deploy unit. Its stdout and stderr go
//! into the deploy's log through a relay, each line marked as the app's
//! (relay.rs). Without the inherited socket (sum-deploy run by hand,
//! `sumctl rollback`), or for a first deploy, a restart works as before.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::app::{pass_fd, Runner};
use super::relay::Relay;
use crate::config::site::Site;

/// Where systemd's socket passing starts (sd_listen_fds(3)).
pub const LISTEN_FDS_START: RawFd = 3;

/// `sh -c` script that runs `"$0" "$@"` with one socket passed at fd 3:
/// gunicorn takes a passed socket only when `LISTEN_PID` is its own pid,
/// so the shell sets it to its own and execs the program in place.
pub const EXEC_WITH_LISTEN_PID: &str =
    r#"LISTEN_PID=$$ LISTEN_FDS=1; export LISTEN_PID LISTEN_FDS; exec "$0" "$@""#;

/// The listening socket systemd passed this process for `socket_path`
/// (`LISTEN_PID` is ours, the first passed fd is a unix socket bound
/// there), made close-on-exec so that no other child inherits it. The
/// `LISTEN_*` variables are removed either way.
pub fn inherited_socket(socket_path: &Path) -> Option<OwnedFd> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    let ours = pid?.parse::<u32>().ok()? == std::process::id();
    let count: RawFd = fds?.parse().ok()?;
    if !ours || count < 1 {
        return None;
    }
    let fd = LISTEN_FDS_START;
    let addr: nix::sys::socket::UnixAddr = nix::sys::socket::getsockname(fd).ok()?;
    if addr.path()? != socket_path {
        return None;
    }
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).ok()?;
    // SAFETY: systemd passed this fd to this process (LISTEN_PID) and
    // nothing else in the process owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A running bridge; stopped gracefully when dropped.
#[derive(Debug)]
pub struct Bridge {
    child: Option<Child>,
    /// How long a graceful stop may take before SIGKILL.
    grace: Duration,
}

impl Bridge {
    /// Starts gunicorn from `release` with `venv` on `listener`, as the
    /// gunicorn unit would (its arguments with the package's `conf`,
    /// gunicorn's own socket-activation variables, umask 027), with
    /// `output` as its stdout and stderr.
    pub fn start(
        runner: &Runner,
        site: &Site,
        listener: BorrowedFd<'_>,
        release: &Path,
        venv: &Path,
        conf: &Path,
        output: OwnedFd,
    ) -> Result<Bridge, String> {
        let gunicorn = venv.join("bin/gunicorn");
        let io = |e: std::io::Error| format!("cannot start {}: {e}", gunicorn.display());
        let mut cmd = runner.command("/bin/sh", release);
        cmd.arg("-c")
            .arg(EXEC_WITH_LISTEN_PID)
            .arg(&gunicorn)
            .args(crate::render::units::gunicorn_args(
                site,
                &conf.to_string_lossy(),
            ))
            .stdout(Stdio::from(output.try_clone().map_err(io)?))
            .stderr(Stdio::from(output));
        let fd = listener.as_raw_fd();
        // SAFETY: pass_fd, umask and prctl are async-signal-safe; the closure
        // allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                pass_fd(fd, LISTEN_FDS_START)?;
                // The gunicorn unit's UMask=0027.
                nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
                // If sum-deploy dies, a graceful stop (requests in flight
                // are answered) rather than the runner's SIGKILL.
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        // The command holds the only copies of `output`: they close with
        // it, so the relay sees the pipe end when gunicorn's processes do.
        let child = cmd.spawn().map_err(io)?;
        Ok(Bridge {
            child: Some(child),
            grace: Duration::from_secs(site.gunicorn.timeout.into()) + Duration::from_secs(5),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// None while it runs; how it ended otherwise.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(status.to_string()),
            Err(e) => Some(e.to_string()),
        }
    }

    /// Stops it gracefully (SIGTERM: requests in flight are answered), or
    /// kills it after the site's timeout; returns how it ended.
    pub fn stop(mut self) -> String {
        self.end()
    }

    fn end(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return "not running".into();
        };
        if let Ok(Some(status)) = child.try_wait() {
            return format!("had exited ({status})");
        }
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + self.grace;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return format!("stopped ({status})"),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return "killed after its graceful timeout".into();
                }
            }
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.end();
    }
}

/// A bridge whose output a relay passes into the deploy's log. Stopped,
/// or dropped, the bridge ends first and then the relay, so that its last
/// lines are in the log before what follows.
pub struct Relayed<'scope> {
    // Dropped in this order.
    bridge: Bridge,
    relay: Relay<'scope>,
}

impl<'scope> Relayed<'scope> {
    pub fn new(bridge: Bridge, relay: Relay<'scope>) -> Relayed<'scope> {
        Relayed { bridge, relay }
    }

    pub fn pid(&self) -> u32 {
        self.bridge.pid()
    }

    /// Stops the bridge (see [`Bridge::stop`]), then lets the relay pass
    /// on the rest of its output; returns how the bridge ended.
    pub fn stop(self) -> String {
        let Relayed { bridge, relay } = self;
        let how = bridge.stop();
        relay.finish();
        how
    }
}
