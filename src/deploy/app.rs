//! Running the app's own code for a deploy (SPEC §7 steps 3–5): pip into a
//! virtualenv keyed by hash, and `manage.py` commands from the new release.
//!
//! Everything here runs as the site's user (never root) with a clean
//! environment: the site's `.env`, the variables the units set
//! (`DJANGO_SETTINGS_MODULE`, `STATIC_ROOT`, `MEDIA_ROOT`), and `PATH`.
//! So PIP_INDEX_URL, PIP_FIND_LINKS or PIP_NO_INDEX in the `.env` point pip
//! at a private index or a wheelhouse.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

use sha2::{Digest, Sha256};

/// How app code is run: as whom and with which environment.
#[derive(Debug, Clone)]
pub struct Runner {
    /// uid and gid of the site's account; None under a test root (the
    /// caller's own user).
    pub run_as: Option<(u32, u32)>,
    pub env: Vec<(String, String)>,
}

/// What a command printed, for logs and errors.
#[derive(Debug)]
pub struct Ran {
    pub ok: bool,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Ran {
    fn from(out: std::process::Output) -> Ran {
        Ran {
            ok: out.status.success(),
            status: out.status.to_string(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Ran {
    /// The last `n` lines of stderr, else of stdout: what an error shows,
    /// each line marked as the app's (relay.rs).
    pub fn tail(&self, n: usize) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        // pip and manage.py lines can be megabytes (a progress bar, a dump).
        let tail = crate::system::text::last_lines(text, n, 500);
        super::relay::marked(tail.as_bytes()).join("\n")
    }
}

impl Runner {
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
            )
            .env("LANG", "C.UTF-8")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .env("PIP_NO_INPUT", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd)
            .stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        // A deploy killed mid-way (kill -9) takes pip and manage.py with
        // it, so nothing keeps writing into a venv the next deploy rebuilds.
        // What collectstatic writes must be readable by Caddy whatever
        // umask the deploy was started with (root's may be 077).
        // SAFETY: prctl and umask are async-signal-safe; the closure
        // allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        cmd
    }

    /// Runs a command to the end and captures what it printed.
    pub fn run(&self, mut cmd: Command) -> Result<Ran, String> {
        let prog = format!("{:?}", cmd.get_program());
        let out = cmd
            .output()
            .map_err(|e| format!("failed to run {prog}: {e}"))?;
        Ok(Ran::from(out))
    }

    /// Runs `python manage.py ARGS` from the release, with the venv's
    /// python, to the end.
    pub fn manage(&self, venv: &Path, release: &Path, args: &[&str]) -> Result<Ran, String> {
        let mut cmd = self.command(venv.join("bin/python"), release);
        cmd.arg("manage.py").args(args);
        self.run(cmd)
    }
}

/// The gunicorn a deploy installs when the requirements lack one: the
/// range the package's gunicorn.conf.py is tested with (its oldest and
/// newest, tests/it/gunicorn_conf.rs with the wheelhouse of
/// tests/wheelhouse.sh). Unpinned, pip would install whatever is newest on
/// the day, with defaults the conf has never seen: gunicorn 25.1's control
/// socket logged an error on every start under the unit's read-only home.
/// Raise the bound once the tests pass with the next major.
pub const GUNICORN: &str = "gunicorn>=23,<28";

/// Whether a requirements file names gunicorn.
pub fn requires_gunicorn(requirements: &str) -> bool {
    requirements.lines().any(|l| {
        let l = l.trim();
        if l.starts_with('#') || l.starts_with('-') {
            return false;
        }
        let name: String = l
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        name.eq_ignore_ascii_case("gunicorn")
    })
}

/// What pip installs for the extra packages: a bare `gunicorn` (what the
/// venv step adds when the requirements lack it) is [`GUNICORN`], the
/// tested range.
fn extra_requirements(extra: &[String]) -> Vec<&str> {
    extra
        .iter()
        .map(|e| {
            if e == "gunicorn" {
                GUNICORN
            } else {
                e.as_str()
            }
        })
        .collect()
}

/// The venv key: a hash of the interpreter (path and version), the
/// requirements file and the extra packages as pip gets them, so a venv
/// with an unpinned gunicorn is not reused for the tested range.
pub fn venv_key(interpreter: &str, requirements: &[u8], extra: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(b"sum-venv-1\0");
    h.update(interpreter.as_bytes());
    h.update(b"\0");
    h.update(requirements);
    h.update(b"\0");
    for e in extra_requirements(extra) {
        h.update(e.as_bytes());
        h.update(b"\0");
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    hex[..16].to_string()
}

/// The interpreter's real path and version, e.g. `/usr/bin/python3.11 3.11.2 (…)`.
pub fn interpreter_identity(
    runner: &Runner,
    interpreter: &str,
    cwd: &Path,
) -> Result<String, String> {
    let mut cmd = runner.command(interpreter, cwd);
    cmd.args([
        "-c",
        "import os, sys; print(os.path.realpath(sys.executable), sys.version.replace(chr(10), ' '))",
    ]);
    let ran = runner.run(cmd).map_err(|e| {
        format!("{e}; set [python] interpreter in the site file to an installed python3")
    })?;
    if !ran.ok {
        return Err(format!(
            "the interpreter `{interpreter}` does not run ({}):\n{}",
            ran.status,
            ran.tail(5)
        ));
    }
    Ok(ran.stdout.trim().to_string())
}

/// Marker written into a venv once everything is installed: a venv without
/// it is a leftover of an interrupted or failed build and is rebuilt.
pub const READY_MARKER: &str = ".sum-ready";

/// What to install into a new venv.
pub struct VenvSpec<'a> {
    pub interpreter: &'a str,
    pub requirements: &'a Path,
    /// Specifiers installed after the requirements (`[python] extra`, plus
    /// gunicorn when the requirements lack it; a bare `gunicorn` is
    /// installed as [`GUNICORN`]).
    pub extra: &'a [String],
}

/// Makes sure `venvs/<key>` is a complete venv; returns whether an existing
/// one was reused.
pub fn ensure_venv(
    runner: &Runner,
    dir: &Path,
    spec: &VenvSpec,
    release: &Path,
) -> Result<bool, String> {
    if dir.join(READY_MARKER).is_file() {
        return Ok(true);
    }
    // A leftover of an interrupted build: emptied, not removed, so the
    // directory may be a mount point.
    empty_dir(dir).map_err(|e| format!("cannot clear the unfinished {}: {e}", dir.display()))?;
    let result = build_venv(runner, dir, spec, release).map_err(|e| {
        // Say so when the disk filled up: pip's own message may be buried.
        match free_bytes(dir) {
            Some(free) if free < LOW_SPACE => format!(
                "{e}\nonly {} MiB left on the file system of {}: free some space and deploy again",
                free / (1 << 20),
                dir.display()
            ),
            _ => e,
        }
    });
    if result.is_err() {
        // Never leave a half-built venv that looks like something.
        let _ = empty_dir(dir);
        let _ = fs_err::remove_dir(dir);
    }
    result.map(|()| false)
}

/// Below this much free space a failed build is blamed on the disk.
const LOW_SPACE: u64 = 64 << 20;

fn free_bytes(path: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    Some(st.blocks_available() as u64 * st.fragment_size() as u64)
}

fn empty_dir(dir: &Path) -> std::io::Result<()> {
    let entries = match fs_err::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        if e.file_type()?.is_dir() {
            fs_err::remove_dir_all(e.path())?;
        } else {
            fs_err::remove_file(e.path())?;
        }
    }
    Ok(())
}

fn build_venv(runner: &Runner, dir: &Path, spec: &VenvSpec, release: &Path) -> Result<(), String> {
    let mut cmd = runner.command(spec.interpreter, release);
    cmd.args(["-m", "venv"]).arg(dir);
    let ran = runner.run(cmd)?;
    if !ran.ok {
        return Err(format!(
            "creating the virtualenv {} failed ({}):\n{}\n(on Debian, `apt install python3-venv`)",
            dir.display(),
            ran.status,
            ran.tail(10)
        ));
    }
    let pip = dir.join("bin/pip");
    let mut cmd = runner.command(&pip, release);
    cmd.args(["install", "--no-input", "-r"])
        .arg(spec.requirements);
    let ran = runner.run(cmd)?;
    if !ran.ok {
        return Err(format!(
            "pip install -r {} failed ({}):\n{}",
            spec.requirements.display(),
            ran.status,
            ran.tail(15)
        ));
    }
    if !spec.extra.is_empty() {
        let extra = extra_requirements(spec.extra);
        let mut cmd = runner.command(&pip, release);
        cmd.args(["install", "--no-input"]).args(&extra);
        let ran = runner.run(cmd)?;
        if !ran.ok {
            return Err(format!(
                "pip install {} failed ({}):\n{}",
                extra.join(" "),
                ran.status,
                ran.tail(15)
            ));
        }
    }
    // The marker is root's (or the caller's): the app cannot fake one.
    let marker = dir.join(READY_MARKER);
    fs_err::write(&marker, b"").map_err(|e| e.to_string())?;
    let f = fs_err::File::open(&marker).map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())?;
    Ok(())
}

/// Migrations by state, from `manage.py showmigrations --plan`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Migrations {
    pub applied: Vec<String>,
    pub pending: Vec<String>,
}

pub fn parse_plan(text: &str) -> Migrations {
    let mut m = Migrations::default();
    for line in text.lines() {
        let l = line.trim();
        if let Some(name) = l.strip_prefix("[X]") {
            m.applied.push(name.trim().to_string());
        } else if let Some(name) = l.strip_prefix("[ ]") {
            m.pending.push(name.trim().to_string());
        }
    }
    m
}

/// The release checks' Python (see the file): `check --deploy`, the WSGI
/// import and the migration plan, then `manage.py` commands on request, in
/// one process.
pub const RELEASE_CHECKS: &str = include_str!("release_checks.py");

/// Effective paths as the import phase reports them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Effective {
    pub static_root: String,
    pub media_root: String,
}

/// One finished phase of the release checks.
#[derive(Debug)]
pub struct Phase {
    pub ran: Ran,
    /// What the phase returned (the import phase: [`Effective`]).
    pub value: serde_json::Value,
}

#[derive(serde::Deserialize)]
struct Report {
    phase: String,
    status: i32,
    #[serde(default)]
    value: serde_json::Value,
    stdout: (u64, u64),
    stderr: (u64, u64),
}

/// The release checks' process (see [`RELEASE_CHECKS`]). Its stdout and
/// stderr are unlinked files read by offset, so what a phase printed is
/// there even when the process dies in it; reports arrive on a pipe at its
/// fd 3. Dropped before [`Checks::finish`], it is killed.
pub struct Checks {
    child: std::process::Child,
    // Files without a path (unlinked temp files, a pipe): std's `File`,
    // as fs_err's names a path.
    stdin: Option<std::process::ChildStdin>,
    reports: BufReader<std::fs::File>,
    stdout: std::fs::File,
    stderr: std::fs::File,
    /// Where the last report's ranges ended: what follows is unreported.
    read: (u64, u64),
    reported: HashMap<String, Phase>,
}

/// The fd the release checks report on.
const REPORT_FD: RawFd = 3;

impl Runner {
    /// Starts the release checks from `release` with the venv's python.
    pub fn start_checks(&self, venv: &Path, release: &Path, wsgi: &str) -> Result<Checks, String> {
        let io = |e: std::io::Error| format!("cannot set up the release checks: {e}");
        let stdout = tempfile::tempfile().map_err(io)?;
        let stderr = tempfile::tempfile().map_err(io)?;
        let (reports, report_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io(e.into()))?;
        let w = report_w.as_raw_fd();
        let mut cmd = self.command(venv.join("bin/python"), release);
        cmd.args(["-c", RELEASE_CHECKS, wsgi])
            .stdin(Stdio::piped())
            .stdout(stdout.try_clone().map_err(io)?)
            .stderr(stderr.try_clone().map_err(io)?);
        // SAFETY: pass_fd is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || pass_fd(w, REPORT_FD));
        }
        let spawned = cmd.spawn();
        // Only the child writes reports: its end closing is the EOF.
        drop(report_w);
        let mut child =
            spawned.map_err(|e| format!("failed to run {}/bin/python: {e}", venv.display()))?;
        let stdin = child.stdin.take();
        Ok(Checks {
            child,
            stdin,
            reports: BufReader::new(std::fs::File::from(reports)),
            stdout,
            stderr,
            read: (0, 0),
            reported: HashMap::new(),
        })
    }
}

/// In a child between fork and exec: makes `fd` the child's `target`,
/// inherited across exec (a plain dup2 onto itself would keep a
/// close-on-exec flag). Async-signal-safe: dup2 and fcntl only.
pub fn pass_fd(fd: RawFd, target: RawFd) -> std::io::Result<()> {
    if fd == target {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
    } else {
        nix::unistd::dup2(fd, target)?;
    }
    Ok(())
}

/// `file`'s bytes from `start` to `end` (to its end when `end` is None).
fn read_range(file: &std::fs::File, start: u64, end: Option<u64>) -> String {
    use std::os::unix::fs::FileExt;
    let end = end.unwrap_or_else(|| file.metadata().map(|m| m.len()).unwrap_or(start));
    let mut buf = vec![0; end.saturating_sub(start) as usize];
    let n = file.read_at(&mut buf, start).unwrap_or(0);
    buf.truncate(n);
    String::from_utf8_lossy(&buf).into_owned()
}

impl Checks {
    /// Waits for the phase `name` (`check`, `import`, `plan`, or the first
    /// argument of a [`Checks::manage`]).
    pub fn phase(&mut self, name: &str) -> Result<Phase, String> {
        loop {
            if let Some(p) = self.reported.remove(name) {
                return Ok(p);
            }
            let mut line = String::new();
            let n = self.reports.read_line(&mut line).unwrap_or(0);
            if n == 0 {
                return Err(self.died(name));
            }
            let r: Report = serde_json::from_str(&line).map_err(|e| {
                format!(
                    "the release checks reported something unexpected ({e}): {}",
                    line.trim()
                )
            })?;
            self.read = (r.stdout.1, r.stderr.1);
            let phase = Phase {
                ran: Ran {
                    ok: r.status == 0,
                    status: format!("exit status: {}", r.status),
                    stdout: read_range(&self.stdout, r.stdout.0, Some(r.stdout.1)),
                    stderr: read_range(&self.stderr, r.stderr.0, Some(r.stderr.1)),
                },
                value: r.value,
            };
            self.reported.insert(r.phase, phase);
        }
    }

    /// Runs `manage.py ARGS` in the same process, after the checks.
    pub fn manage(&mut self, args: &[&str]) -> Result<Phase, String> {
        let name = args.first().copied().unwrap_or_default();
        let sent = self.stdin.as_mut().map(|stdin| {
            let mut line = serde_json::to_string(args).unwrap_or_default();
            line.push('\n');
            stdin
                .write_all(line.as_bytes())
                .and_then(|()| stdin.flush())
        });
        match sent {
            Some(Ok(())) => self.phase(name),
            _ => Err(self.died(name)),
        }
    }

    /// Ends the process: no more commands, then waits for it.
    pub fn finish(mut self) {
        self.stdin = None;
        let _ = self.child.wait();
    }

    /// The process ended before reporting `name`: its status, and what it
    /// printed since its last report.
    fn died(&mut self, name: &str) -> String {
        self.stdin = None;
        let status = match self.child.wait() {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        let ran = Ran {
            ok: false,
            status: status.clone(),
            stdout: read_range(&self.stdout, self.read.0, None),
            stderr: read_range(&self.stderr, self.read.1, None),
        };
        format!(
            "the release checks' python ended before `{name}` ({status}):\n{}",
            ran.tail(12)
        )
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `venvs/<key>` for a site's venvs directory.
pub fn venv_dir(venvs: &Path, key: &str) -> PathBuf {
    venvs.join(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_gunicorn_in_requirements() {
        assert!(requires_gunicorn("Django==5.2\ngunicorn==23.0.0\n"));
        assert!(requires_gunicorn("Gunicorn>=22 ; python_version > '3'\n"));
        assert!(requires_gunicorn("gunicorn[gevent]\n"));
        assert!(!requires_gunicorn("# gunicorn\nuwsgi==2.0\n"));
        assert!(!requires_gunicorn("gunicorn-extra==1\n-r base.txt\n"));
        // What a deploy adds counts as naming it.
        assert!(requires_gunicorn(GUNICORN));
    }

    #[test]
    fn an_added_gunicorn_is_the_tested_range() {
        let extra = ["whitenoise".to_string(), "gunicorn".to_string()];
        assert_eq!(extra_requirements(&extra), ["whitenoise", GUNICORN]);
        // A pinned gunicorn from the site file is the admin's choice.
        assert_eq!(
            extra_requirements(&["gunicorn==22.0.0".to_string()]),
            ["gunicorn==22.0.0"]
        );
        // The key follows what pip installs, not how it was written.
        let py = "/usr/bin/python3.11 3.11.2";
        assert_eq!(
            venv_key(py, b"Django==5.2\n", &["gunicorn".into()]),
            venv_key(py, b"Django==5.2\n", &[GUNICORN.into()])
        );
    }

    #[test]
    fn venv_keys_change_with_every_input() {
        let base = venv_key("/usr/bin/python3.11 3.11.2", b"Django==5.2\n", &[]);
        assert_eq!(base.len(), 16);
        assert_eq!(
            base,
            venv_key("/usr/bin/python3.11 3.11.2", b"Django==5.2\n", &[])
        );
        assert_ne!(
            base,
            venv_key("/usr/bin/python3.12 3.12.1", b"Django==5.2\n", &[])
        );
        assert_ne!(
            base,
            venv_key("/usr/bin/python3.11 3.11.2", b"Django==5.1\n", &[])
        );
        assert_ne!(
            base,
            venv_key(
                "/usr/bin/python3.11 3.11.2",
                b"Django==5.2\n",
                &["gunicorn".into()]
            )
        );
    }

    #[test]
    fn parses_the_migration_plan() {
        let m = parse_plan(
            "[X]  contenttypes.0001_initial\n[X]  notes.0001_initial\n[ ]  notes.0002_note_pinned\n",
        );
        assert_eq!(
            m.applied,
            vec!["contenttypes.0001_initial", "notes.0001_initial"]
        );
        assert_eq!(m.pending, vec!["notes.0002_note_pinned"]);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_plan_output_is_read_without_panicking(text in any::<String>()) {
                let m = parse_plan(&text);
                prop_assert!(m.applied.len() + m.pending.len() <= text.lines().count());
            }

            #[test]
            fn generated_plans_are_read_back(
                entries in proptest::collection::vec(("[a-z_]{1,10}", "[0-9]{4}_[a-z_]{1,12}", any::<bool>()), 0..20),
                noise in "[^\\[\n]{0,40}",
            ) {
                let mut text = format!("{noise}\n");
                for (app, name, applied) in &entries {
                    let mark = if *applied { "[X]" } else { "[ ]" };
                    text.push_str(&format!(" {mark}  {app}.{name}\r\n"));
                }
                let m = parse_plan(&text);
                let want = |a: bool| -> Vec<String> {
                    entries.iter().filter(|e| e.2 == a).map(|e| format!("{}.{}", e.0, e.1)).collect()
                };
                prop_assert_eq!(m.applied, want(true));
                prop_assert_eq!(m.pending, want(false));
            }
        }
    }
}
