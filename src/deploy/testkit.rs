//! Fixtures of the deploy's unit tests: a site under a temporary root, its
//! context, releases with their records, and a service-manager double that
//! records what it is asked.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::ctx::{Ctx, Options};
use crate::config::layout::{Root, SiteLayout};
use crate::config::site::Site;
use crate::site_state::{self, ReleaseInfo, ReleaseStatus};
use crate::system::control::Control;

/// The site `acme` under a temporary root, its site file written.
pub(super) struct Fixture {
    pub(super) _dir: tempfile::TempDir,
    pub(super) root: Root,
    pub(super) site: Site,
    pub(super) opts: Options,
    pub(super) l: SiteLayout,
}

impl Fixture {
    pub(super) fn new() -> Fixture {
        Fixture::with("")
    }

    /// With `more` appended to a minimal site file (sections included).
    pub(super) fn with(more: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let text = format!(
            "domain = \"acme.example.com\"\n[git]\nurl = \"https://git.example.com/acme.git\"\n{more}"
        );
        let file = root.sites_dir().join("acme.toml");
        fs_err::create_dir_all(root.sites_dir()).unwrap();
        fs_err::write(&file, &text).unwrap();
        let site = Site::parse("acme", &file, &text).unwrap();
        Fixture {
            _dir: dir,
            root,
            site,
            opts: Options::default(),
            l: SiteLayout::new("acme"),
        }
    }

    /// The service manager of a test root: none.
    pub(super) fn no_control(&self) -> crate::system::control::NoControl {
        crate::system::control::NoControl {
            root: self.root.clone(),
        }
    }

    pub(super) fn ctx(&self) -> Ctx<'_> {
        Ctx {
            root: &self.root,
            site: &self.site,
            opts: &self.opts,
            account: None,
            listener: None,
        }
    }

    pub(super) fn p(&self, canonical: &str) -> PathBuf {
        self.root.path(canonical)
    }

    /// The site's directories, as the bootstrap makes them.
    pub(super) fn dirs(&self) {
        super::dirs::ensure(&self.root, "acme", None).unwrap();
    }

    /// The site's `.env` with `text`, mode 0640.
    pub(super) fn env_file(&self, text: &str) {
        let path = self.p(&self.l.env_file);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(&path, text).unwrap();
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    }

    /// `releases/<name>` and a ready `venvs/<venv>`, recorded as `status`
    /// with `migrations` applied.
    pub(super) fn release(
        &self,
        name: &str,
        venv: &str,
        status: ReleaseStatus,
        migrations: &[&str],
    ) -> ReleaseInfo {
        fs_err::create_dir_all(self.p(&self.l.releases).join(name)).unwrap();
        let venv_dir = self.p(&self.l.venvs).join(venv);
        fs_err::create_dir_all(&venv_dir).unwrap();
        fs_err::write(venv_dir.join(super::app::READY_MARKER), b"").unwrap();
        let info = ReleaseInfo {
            release: name.to_string(),
            git_ref: "main".to_string(),
            sha: "0123456789abcdef0123456789abcdef01234567".to_string(),
            venv: venv.to_string(),
            created_utc: "2026-01-01T00:00:00Z".to_string(),
            status,
            migrations: migrations.iter().map(|m| m.to_string()).collect(),
            static_root: None,
            media_root: None,
            database: None,
        };
        site_state::save_release(&self.p(&self.l.state), &info).unwrap();
        info
    }

    /// What `state/releases/<name>.json` says.
    pub(super) fn recorded(&self, name: &str) -> ReleaseInfo {
        site_state::load_release(&self.p(&self.l.state), name).unwrap()
    }

    /// Where the link `canonical` points, as written.
    pub(super) fn link(&self, canonical: &str) -> Option<PathBuf> {
        fs_err::read_link(self.p(canonical)).ok()
    }
}

/// A service manager that runs nothing and records what it was asked.
pub(super) struct Recorder {
    pub(super) socket: PathBuf,
    pub(super) calls: Vec<String>,
    /// Every restart fails with this message.
    pub(super) restart_fails: Option<String>,
}

impl Recorder {
    pub(super) fn new(fx: &Fixture) -> Recorder {
        Recorder {
            socket: fx.p(&fx.l.socket),
            calls: Vec::new(),
            restart_fails: None,
        }
    }
}

impl Control for Recorder {
    fn manages_services(&self) -> bool {
        true
    }
    fn restart(&mut self, _: &Site) -> Result<(), String> {
        self.calls.push("restart".into());
        match &self.restart_fails {
            Some(m) => Err(m.clone()),
            None => Ok(()),
        }
    }
    fn stop(&mut self, _: &Site) -> Result<(), String> {
        self.calls.push("stop".into());
        Ok(())
    }
    fn socket(&self, _: &Site) -> PathBuf {
        self.socket.clone()
    }
    fn reload_caddy(&mut self) -> Result<(), String> {
        self.calls.push("reload caddy".into());
        Ok(())
    }
}

/// What was logged, as text.
pub(super) fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// `path` relative to nothing: for comparing link targets.
pub(super) fn rel(p: &str) -> PathBuf {
    Path::new(p).to_path_buf()
}
