//! The deploy tests' world: a temporary root with the example site's file
//! and `.env`, a real PostgreSQL and Redis, a git repository of the example
//! app with its eight versions (examples/make-repo.sh), the wheelhouse of
//! its requirements (tests/wheelhouse.sh), and a control that runs real
//! gunicorn on the site's socket where systemd would.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use sum::config::layout::Root;
use sum::config::site::Site;
use sum::deploy::{Options, Outcome};
use sum::system::control::Control;

use super::pg::Pg;
use super::redis::Redis;

pub const DOMAIN: &str = "acme.localhost";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

static WHEELHOUSE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The wheelhouse, downloaded once per machine.
pub fn wheelhouse() -> PathBuf {
    let mut w = WHEELHOUSE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = &*w {
        return p.clone();
    }
    let out = Command::new("bash")
        .arg(manifest_dir().join("tests/wheelhouse.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tests/wheelhouse.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rel = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let p = manifest_dir().join(rel);
    *w = Some(p.clone());
    p
}

/// A virtualenv at `venv` with `packages` from the wheelhouse, offline.
pub fn venv_with(venv: &Path, packages: &[&str]) {
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv)
        .status()
        .unwrap()
        .success();
    assert!(ok, "python3 -m venv failed");
    let out = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--no-index", "--find-links"])
        .arg(wheelhouse())
        .args(packages)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pip install {packages:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh repository of the example app with tags v1..v8.
pub fn make_repo(dest: &Path) {
    make_repo_with("examples/make-repo.sh", dest)
}

fn make_repo_with(script: &str, dest: &Path) {
    let out = Command::new("bash")
        .arg(manifest_dir().join(script))
        .arg(dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Which example app the site runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// examples/acme: reads our environment variables, has a health view.
    Acme,
    /// examples/bakery, shaped like a Wagtail project: hard-coded
    /// STATIC_ROOT/MEDIA_ROOT inside the project, DJANGO_-prefixed
    /// variables, no gunicorn in its requirements, no health view. The
    /// site is still called acme; only its code differs.
    Bakery,
}

pub fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub struct Fixture {
    pub root: tempfile::TempDir,
    pub pg: Pg,
    pub redis: Redis,
    pub repo: PathBuf,
    _repo_dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Fixture {
    /// None when PostgreSQL or redis-server is missing outside CI.
    pub fn new(extra_toml: &str) -> Option<Fixture> {
        Fixture::with_app(App::Acme, extra_toml)
    }

    pub fn with_app(app: App, extra_toml: &str) -> Option<Fixture> {
        if !super::require_tool("redis-server") || !super::require_tool("git") {
            return None;
        }
        let pg = Pg::start()?;
        let redis = Redis::start(None);
        let db_url = pg.create_site_db("acme", "acme-pw", "acme");
        let repo_dir = tempfile::tempdir().unwrap();
        let repo = repo_dir.path().join("acme.git");
        // The bakery has no health view: its home page stands in.
        let (health_path, app_toml) = match app {
            App::Acme => {
                make_repo(&repo);
                ("", String::new())
            }
            App::Bakery => {
                make_repo_with("examples/make-bakery-repo.sh", &repo);
                // The example's own site file decides the Django and
                // Python settings.
                let example =
                    std::fs::read_to_string(manifest_dir().join("examples/bakery.toml")).unwrap();
                let table: toml::Table = example.parse().unwrap();
                let app_toml = format!(
                    "[django]\n{}[python]\n{}",
                    toml::to_string(&table["django"]).unwrap(),
                    toml::to_string(&table["python"]).unwrap()
                );
                ("path = \"/\"\n", app_toml)
            }
        };
        let root = tempfile::tempdir().unwrap();
        let sites = root.path().join("etc/sum/sites");
        std::fs::create_dir_all(&sites).unwrap();
        std::fs::write(
            sites.join("acme.toml"),
            format!(
                "domain = \"{DOMAIN}\"\n[git]\nurl = \"{}\"\nref = \"main\"\n\
                 [health]\ntimeout = \"20s\"\n{health_path}{app_toml}{extra_toml}",
                repo.display()
            ),
        )
        .unwrap();
        let home = root.path().join("srv/sum/acme");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let key = "tests-only-q8Vx2Lr7Kp4Zm9Tw1Ye6Hn3Jb5Sd0Fg8Uc7Ia2Ro4Wl";
        let (key_var, hosts_var) = match app {
            App::Acme => ("SECRET_KEY", "ALLOWED_HOSTS"),
            App::Bakery => ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS"),
        };
        let env = vec![
            ("DATABASE_URL".to_string(), db_url),
            (key_var.into(), key.into()),
            ("REDIS_URL".into(), redis.url()),
            (hosts_var.into(), DOMAIN.into()),
            ("PIP_NO_INDEX".into(), "1".into()),
            ("PIP_FIND_LINKS".into(), wheelhouse().display().to_string()),
        ];
        let fx = Fixture {
            root,
            pg,
            redis,
            repo,
            _repo_dir: repo_dir,
            env,
        };
        fx.write_env(&fx.env);
        Some(fx)
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().join("srv/sum/acme")
    }

    pub fn sum_root(&self) -> Root {
        Root::new(self.root.path())
    }

    pub fn write_env(&self, env: &[(String, String)]) {
        let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let path = self.home().join(".env");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    }

    pub fn site(&self) -> Site {
        sum::config::sites::load_file(&self.root.path().join("etc/sum/sites/acme.toml")).unwrap()
    }

    /// The live release's name.
    pub fn live(&self) -> Option<String> {
        std::fs::read_link(self.home().join("app"))
            .ok()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
    }

    /// Runs a deploy through the library with `control`.
    pub fn deploy(&self, control: &mut dyn Control, opts: &Options) -> (Outcome, String) {
        let site = self.site();
        let root = self.sum_root();
        let ctx = sum::deploy::Ctx {
            root: &root,
            site: &site,
            opts,
            account: None,
            listener: None,
        };
        let mut out = Vec::new();
        let outcome = sum::deploy::deploy(&ctx, control, &mut out);
        (outcome, String::from_utf8_lossy(&out).into_owned())
    }

    /// Runs `sumctl rollback` through the library with `control`.
    pub fn rollback(&self, control: &mut dyn Control, to: Option<&str>) -> (u8, String) {
        let site = self.site();
        let root = self.sum_root();
        let opts = Options::default();
        let ctx = sum::deploy::Ctx {
            root: &root,
            site: &site,
            opts: &opts,
            account: None,
            listener: None,
        };
        let mut out = Vec::new();
        let (code, _) = sum::deploy::rollback::rollback(&ctx, to, control, &mut out);
        (code, String::from_utf8_lossy(&out).into_owned())
    }

    pub fn gunicorn(&self) -> Gunicorn {
        Gunicorn {
            root: self.sum_root(),
            home: self.home(),
            env: self.env.clone(),
            child: None,
        }
    }

    /// GET over the site's socket, as Caddy would.
    pub fn get(&self, path: &str) -> sum::probe::smoke::Response {
        sum::probe::smoke::get(
            &self.sum_root().path("/run/sum/acme/gunicorn.sock"),
            DOMAIN,
            path,
            std::time::Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("GET {path} over the socket: {e}"))
    }

    /// POSTs one file as multipart form data over the site's socket (an
    /// upload, as a browser would send it through Caddy); status and body.
    pub fn upload(&self, path: &str, filename: &str, content: &[u8]) -> (u16, String) {
        use std::io::{Read, Write};
        let boundary = "sum-golden-path-test-boundary";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n{filename}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let mut s = std::os::unix::net::UnixStream::connect(
            self.sum_root().path("/run/sum/acme/gunicorn.sock"),
        )
        .unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: {DOMAIN}\r\nX-Forwarded-Proto: https\r\n\
             Content-Type: multipart/form-data; boundary={boundary}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(&body).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let r = sum::probe::smoke::parse(&raw)
            .unwrap_or_else(|| panic!("POST {path}: {}", String::from_utf8_lossy(&raw)));
        (r.status, r.body)
    }

    /// The `release` the example's health view reports.
    pub fn serving_version(&self) -> String {
        let r = self.get("/health/");
        let v: serde_json::Value = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("health is not JSON ({e}): {}", r.body));
        v["release"].as_str().unwrap_or("?").to_string()
    }

    pub fn sql(&self, sql: &str) -> String {
        self.pg.sql("acme", sql).trim().to_string()
    }
}

/// The environment the generated units give app code: the `.env`
/// (`env`), the settings module, `STATIC_ROOT` and `MEDIA_ROOT` in `home`.
pub fn unit_env(home: &Path, env: &[(String, String)], site: &Site) -> Vec<(String, String)> {
    let mut v = env.to_vec();
    let path = std::env::var("PATH").unwrap_or_default();
    let at = |dir: &str| home.join(dir).display().to_string();
    v.extend([
        ("PATH".into(), path),
        (
            "DJANGO_SETTINGS_MODULE".into(),
            site.django.settings.clone(),
        ),
        ("STATIC_ROOT".into(), at("static")),
        ("MEDIA_ROOT".into(), at("media")),
        ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
    ]);
    v
}

/// gunicorn's arguments in these tests: one worker, preloaded, the
/// package's config, the site's WSGI app (no socket).
pub fn gunicorn_args(site: &Site) -> Vec<String> {
    let conf = manifest_dir().join("units/gunicorn.conf.py");
    let mut args: Vec<String> = ["--workers", "1", "--threads", "2", "--preload", "--config"]
        .map(String::from)
        .to_vec();
    args.push(conf.display().to_string());
    args.push(site.django.wsgi.clone());
    args
}

/// Stops a gunicorn as systemd would (SIGTERM) and waits for it.
pub fn stop_gracefully(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = c.wait();
    }
}

/// Runs real gunicorn on the site's socket, as `sum-gunicorn@.service`
/// would: from the `app` and `venv` links, preloaded, with the `.env`.
pub struct Gunicorn {
    root: Root,
    home: PathBuf,
    env: Vec<(String, String)>,
    pub child: Option<Child>,
}

impl Gunicorn {
    fn kill(&mut self) {
        stop_gracefully(&mut self.child);
    }

    fn log(&self) -> PathBuf {
        self.home.join("gunicorn.log")
    }
}

impl Drop for Gunicorn {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Control for Gunicorn {
    fn manages_services(&self) -> bool {
        true
    }
    fn restart(&mut self, site: &Site) -> Result<(), String> {
        self.kill();
        let sock = self.socket(site);
        std::fs::create_dir_all(sock.parent().unwrap()).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&sock);
        let log = std::fs::File::create(self.log()).map_err(|e| e.to_string())?;
        // As systemd reads EnvironmentFile= at each start: the .env as it
        // is now, or the fixture's when a test made it unreadable.
        if let Ok(env) = sum::config::envfile::read(&self.home.join(".env"), None) {
            self.env = env;
        }
        let child = Command::new(self.home.join("venv/bin/gunicorn"))
            .args(gunicorn_args(site))
            .arg("--bind")
            .arg(format!("unix:{}", sock.display()))
            .current_dir(self.home.join("app"))
            .env_clear()
            .envs(unit_env(&self.home, &self.env, site))
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("gunicorn: {e}"))?;
        self.child = Some(child);
        Ok(())
    }
    fn stop(&mut self, _: &Site) -> Result<(), String> {
        self.kill();
        Ok(())
    }
    fn socket(&self, _: &Site) -> PathBuf {
        self.root.path("/run/sum/acme/gunicorn.sock")
    }
    fn journal_tail(&mut self, _: &Site) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}
