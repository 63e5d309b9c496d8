//! The site's state on disk: what a deploy records (SPEC §7 step 9), one
//! JSON line per deploy or rollback in `state/history.jsonl` and one JSON
//! file per release in `state/releases/<release>.json` saying what it is and
//! whether it ever passed its smoke check; the live release and where its
//! static and media really are; the last good copy of the site file
//! (`last_good`); the database a release's Django uses (`database`); and
//! the site's lock (`lock`). Pruning reads both records.

pub mod database;
pub mod last_good;
pub mod lock;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::layout::{Root, SiteLayout};
use crate::system::fsutil::write_atomic;

/// A release's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseStatus {
    /// Built; not (yet) known to work.
    Built,
    /// Passed its smoke check while live at least once.
    Good,
    /// Failed a check, before or after the swap.
    Failed,
}

/// `state/releases/<release>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    pub release: String,
    pub git_ref: String,
    pub sha: String,
    /// The virtualenv it runs in: `venvs/<venv>`.
    pub venv: String,
    pub created_utc: String,
    pub status: ReleaseStatus,
    /// Every migration applied when it went live (`app.name`), so a
    /// rollback can warn when its target predates some of them.
    #[serde(default)]
    pub migrations: Vec<String>,
    /// Django's effective STATIC_ROOT and MEDIA_ROOT for this release.
    #[serde(default)]
    pub static_root: Option<String>,
    #[serde(default)]
    pub media_root: Option<String>,
    /// The database its Django uses (`DATABASES["default"]`, no password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<database::DjangoDatabase>,
}

/// One step of a deploy and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTime {
    pub step: String,
    pub seconds: f64,
}

/// One line of `state/history.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// `deploy` or `rollback`.
    pub action: String,
    pub started_utc: String,
    pub finished_utc: String,
    pub who: String,
    #[serde(default)]
    pub git_ref: Option<String>,
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(default)]
    pub release: Option<String>,
    /// The release that was live before.
    #[serde(default)]
    pub previous: Option<String>,
    /// `ok`, `failed` (nothing changed), `rolled-back`, `rollback-failed`,
    /// `busy`.
    pub outcome: String,
    pub exit_code: u8,
    #[serde(default)]
    pub failed_step: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub migrations_applied: Vec<String>,
    #[serde(default)]
    pub backup: Option<String>,
    #[serde(default)]
    pub venv: Option<String>,
    #[serde(default)]
    pub venv_reused: Option<bool>,
    #[serde(default)]
    pub steps: Vec<StepTime>,
}

pub fn history_path(state: &Path) -> PathBuf {
    state.join("history.jsonl")
}

fn releases_state_dir(state: &Path) -> PathBuf {
    state.join("releases")
}

/// Appends a record (one line, fsynced). A line left unfinished by a crash
/// is closed first, so it cannot swallow the new record.
pub fn append(state: &Path, rec: &Record) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut line = serde_json::to_string(rec).map_err(std::io::Error::other)?;
    line.push('\n');
    let mut f = fs_err::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(history_path(state))?;
    if f.metadata()?.len() > 0 {
        let mut last = [0u8; 1];
        f.seek(SeekFrom::End(-1))?;
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            line.insert(0, '\n');
        }
    }
    f.write_all(line.as_bytes())?;
    f.sync_all()
}

/// Every record, oldest first. Lines that do not parse (a line cut short by
/// a crash) are skipped.
pub fn history(state: &Path) -> std::io::Result<Vec<Record>> {
    let text = match fs_err::read_to_string(history_path(state)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

pub fn save_release(state: &Path, info: &ReleaseInfo) -> std::io::Result<()> {
    let dir = releases_state_dir(state);
    fs_err::create_dir_all(&dir)?;
    let text = serde_json::to_string_pretty(info).map_err(std::io::Error::other)?;
    write_atomic(
        &dir.join(format!("{}.json", info.release)),
        text.as_bytes(),
        0o644,
    )
}

pub fn load_release(state: &Path, release: &str) -> Option<ReleaseInfo> {
    let bytes = fs_err::read(releases_state_dir(state).join(format!("{release}.json"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn set_status(state: &Path, release: &str, status: ReleaseStatus) -> std::io::Result<()> {
    if let Some(mut info) = load_release(state, release) {
        info.status = status;
        save_release(state, &info)?;
    }
    Ok(())
}

/// Release directory names, newest first (names start with a UTC stamp).
pub fn release_names(releases: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = match fs_err::read_dir(releases) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    names.sort_unstable_by(|a, b| b.cmp(a));
    Ok(names)
}

/// The newest release that is marked good.
pub fn last_good(state: &Path, releases: &Path) -> Option<String> {
    release_names(releases)
        .ok()?
        .into_iter()
        .find(|r| load_release(state, r).is_some_and(|i| i.status == ReleaseStatus::Good))
}

/// The pre-migrate backups that must stay: file name (in `backups/`) →
/// the release whose deploy took it, for every history record that names
/// a backup of a release still in `releases/`. The backup is the way back
/// from that release's migrations (`sumctl history` points at it), so
/// retention keeps it as long as the release can be rolled back to or
/// from; once pruning removes the release, the backup goes by the normal
/// rules. The history records the backup's full path; only its file name
/// is compared, as retention only ever deletes files of the backups
/// directory.
pub fn pre_migrate_backups(
    state: &Path,
    releases: &Path,
) -> std::io::Result<std::collections::BTreeMap<String, String>> {
    let on_disk: BTreeSet<String> = release_names(releases)?.into_iter().collect();
    Ok(history(state)?
        .into_iter()
        .filter_map(|r| {
            let release = r.release.filter(|n| on_disk.contains(n))?;
            let file = Path::new(r.backup.as_deref()?)
                .file_name()?
                .to_str()?
                .to_string();
            Some((file, release))
        })
        .collect())
}

/// What pruning decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PrunePlan {
    pub remove_releases: Vec<String>,
    pub remove_venvs: Vec<String>,
}

/// Decides which releases and venvs go. `releases` newest first with their
/// status (None: no record, e.g. a release whose deploy was killed);
/// `venv_of` gives a release's venv.
///
/// Kept: the live release and the last good one, always; the newest good
/// releases up to `keep` in all; the newest failed or unrecorded release (for
/// inspection). Failed releases never count as good ones. A venv goes when no
/// kept release uses it and it is not the live one.
pub fn plan_prune(
    releases: &[(String, Option<ReleaseStatus>, Option<String>)],
    live: Option<&str>,
    live_venv: Option<&str>,
    last_good: Option<&str>,
    keep: usize,
    venvs: &[String],
) -> PrunePlan {
    let mut kept: BTreeSet<&str> = BTreeSet::new();
    kept.extend(live);
    kept.extend(last_good);
    let mut good = kept.len();
    let mut kept_one_bad = false;
    for (name, status, _) in releases {
        if kept.contains(name.as_str()) {
            continue;
        }
        match status {
            Some(ReleaseStatus::Good) if good < keep => {
                good += 1;
                kept.insert(name);
            }
            Some(ReleaseStatus::Good) => {}
            _ if !kept_one_bad => {
                kept_one_bad = true;
                kept.insert(name);
            }
            _ => {}
        }
    }
    let remove_releases: Vec<String> = releases
        .iter()
        .filter(|(n, _, _)| !kept.contains(n.as_str()))
        .map(|(n, _, _)| n.clone())
        .collect();
    let used: BTreeSet<&str> = releases
        .iter()
        .filter(|(n, _, _)| kept.contains(n.as_str()))
        .filter_map(|(_, _, v)| v.as_deref())
        .chain(live_venv)
        .collect();
    let remove_venvs = venvs
        .iter()
        .filter(|v| !used.contains(v.as_str()))
        .cloned()
        .collect();
    PrunePlan {
        remove_releases,
        remove_venvs,
    }
}

/// Which kind of directory Caddy serves: `/static/` or `/media/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Static,
    Media,
}

/// Whether Caddy may serve `path` (under `home`, both in the same space:
/// canonical, or real under a test root) for `kind`. Only the places made
/// for it: `static/` and `media/`, a `[deploy] shared` path, and for
/// static files a directory inside a release (a hard-coded STATIC_ROOT);
/// never the home itself, the backups, the state, the venvs, the git
/// mirror or a whole release, and no `..`.
pub fn servable(home: &Path, path: &Path, kind: Served) -> bool {
    if !path.is_absolute()
        || path
            .components()
            .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
    {
        return false;
    }
    let Ok(rest) = path.strip_prefix(home) else {
        return false;
    };
    let parts: Vec<&std::ffi::OsStr> = rest.iter().collect();
    match (parts.first().and_then(|p| p.to_str()), kind) {
        (Some("static"), Served::Static) | (Some("media"), Served::Media) => true,
        (Some("shared"), _) => parts.len() >= 2,
        (Some("releases"), Served::Static) => parts.len() >= 3,
        _ => false,
    }
}

/// The effective static and media directories of the live release, as
/// canonical paths (`/srv/sum/<site>/...`), when its deploy recorded them
/// and they are [`servable`]: the app's settings must not make Caddy serve,
/// or a backup archive, other parts of the file system. None means the
/// default (`static/`, `media/`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LivePaths {
    pub static_dir: Option<String>,
    pub media_dir: Option<String>,
}

pub fn live_paths(root: &Root, site: &str) -> LivePaths {
    let l = SiteLayout::new(site);
    let Some(release) = crate::system::fsutil::link_name(&root.path(&l.app)) else {
        return LivePaths::default();
    };
    let Some(info) = load_release(&root.path(&l.state), &release) else {
        return LivePaths::default();
    };
    let home = Path::new(&l.home);
    // Recorded paths are real ones, under a test root too; callers get
    // canonical ones.
    let base = root.path("/");
    let accept = |recorded: &Option<String>, kind| -> Option<String> {
        let p = Path::new(recorded.as_deref()?);
        let canonical = match p.strip_prefix(&base) {
            Ok(rest) if !root.is_system() => Path::new("/").join(rest),
            _ => p.to_path_buf(),
        };
        servable(home, &canonical, kind).then(|| canonical.to_string_lossy().into_owned())
    };
    LivePaths {
        static_dir: accept(&info.static_root, Served::Static),
        media_dir: accept(&info.media_root, Served::Media),
    }
}

/// The release that was live before `live`, as the history tells it: each
/// deploy or rollback that ended `ok` made its `release` live, replacing
/// its `previous`. A deploy that failed, was rolled back or only prepared
/// changed nothing. When the history's last live release is not `live`,
/// a switch is under way and not yet recorded (a deploy or a rollback
/// between its swap and its record, where it re-renders Caddy, or one
/// killed after the swap): the release the history says is live is then
/// the one before. After a rollback this is the release rolled back from.
pub fn previous_live(state: &Path, live: &str) -> Option<String> {
    let mut current: Option<String> = None;
    let mut before: Option<String> = None;
    for r in history(state).ok()? {
        if r.outcome != "ok" {
            continue;
        }
        let Some(release) = r.release else { continue };
        if current.as_deref() == Some(release.as_str()) {
            continue;
        }
        before = r.previous.or(current);
        current = Some(release);
    }
    let previous = if current.as_deref() == Some(live) {
        before
    } else {
        current
    };
    previous.filter(|p| p != live)
}

/// The static files of the release that was live before the live one
/// ([`previous_live`]), which pages it rendered may still ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousStatic {
    pub release: String,
    /// Canonical (`/srv/sum/<site>/...`), [`servable`].
    pub static_dir: String,
}

/// The previous release's static directory while that release is still in
/// `releases/`: its recorded effective STATIC_ROOT when [`servable`], else
/// the site's `static/`. None when there is no previous release, it was
/// pruned, or its directory is the live one's anyway.
pub fn previous_static(root: &Root, site: &str) -> Option<PreviousStatic> {
    let l = SiteLayout::new(site);
    let live = crate::system::fsutil::link_name(&root.path(&l.app))?;
    let state = root.path(&l.state);
    let release = previous_live(&state, &live)?;
    if !root.path(&l.releases).join(&release).is_dir() {
        return None;
    }
    let recorded = load_release(&state, &release).and_then(|i| i.static_root);
    // As in live_paths: recorded paths are real ones, under a test root too.
    let base = root.path("/");
    let static_dir = recorded
        .map(|p| match Path::new(&p).strip_prefix(&base) {
            Ok(rest) if !root.is_system() => Path::new("/").join(rest),
            _ => PathBuf::from(p),
        })
        .filter(|p| servable(Path::new(&l.home), p, Served::Static))
        .map_or_else(
            || l.static_dir.clone(),
            |p| p.to_string_lossy().into_owned(),
        );
    let live_dir = live_paths(root, site)
        .static_dir
        .unwrap_or_else(|| l.static_dir.clone());
    (static_dir != live_dir).then_some(PreviousStatic {
        release,
        static_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReleaseStatus::*;

    #[test]
    fn caddy_serves_only_the_places_made_for_it() {
        let home = Path::new("/srv/sum/acme");
        let yes = |p: &str, k| servable(home, Path::new(p), k);
        assert!(yes("/srv/sum/acme/static", Served::Static));
        assert!(yes("/srv/sum/acme/media", Served::Media));
        assert!(yes("/srv/sum/acme/media/uploads", Served::Media));
        assert!(yes("/srv/sum/acme/shared/bakery/media", Served::Media));
        assert!(yes(
            "/srv/sum/acme/releases/r1/collect_static",
            Served::Static
        ));
        for (p, k) in [
            ("/srv/sum/acme", Served::Static),
            ("/srv/sum/acme/releases/r1", Served::Static),
            ("/srv/sum/acme/releases/r1/media", Served::Media),
            ("/srv/sum/acme/static", Served::Media),
            ("/srv/sum/acme/media", Served::Static),
            ("/srv/sum/acme/shared", Served::Media),
            ("/srv/sum/acme/backups", Served::Media),
            ("/srv/sum/acme/state", Served::Static),
            ("/srv/sum/acme/repo.git", Served::Static),
            ("/srv/sum/acme/venvs", Served::Static),
            ("/srv/sum/acme/static/../backups", Served::Static),
            ("/srv/sum/other/static", Served::Static),
            ("/etc", Served::Media),
            ("static", Served::Static),
        ] {
            assert!(!yes(p, k), "{p} {k:?}");
        }
    }

    fn r(
        n: &str,
        s: Option<ReleaseStatus>,
        v: &str,
    ) -> (String, Option<ReleaseStatus>, Option<String>) {
        (n.to_string(), s, Some(v.to_string()))
    }

    #[test]
    fn pruning_keeps_live_last_good_and_newest_good() {
        // newest first
        let rels = vec![
            r("r7", Some(Failed), "c"),
            r("r6", Some(Failed), "c"),
            r("r5", Some(Good), "b"),
            r("r4", Some(Good), "b"),
            r("r3", None, "a"),
            r("r2", Some(Good), "a"),
            r("r1", Some(Good), "z"),
        ];
        let venvs = vec!["a".into(), "b".into(), "c".into(), "z".into(), "old".into()];
        let p = plan_prune(&rels, Some("r5"), Some("b"), Some("r5"), 2, &venvs);
        assert_eq!(p.remove_releases, vec!["r6", "r3", "r2", "r1"]);
        assert_eq!(p.remove_venvs, vec!["a", "z", "old"]);
    }

    #[test]
    fn pruning_never_removes_live_or_last_good_even_when_old() {
        let rels = vec![
            r("r4", Some(Good), "d"),
            r("r3", Some(Good), "c"),
            r("r2", Some(Good), "b"),
            r("r1", Some(Good), "a"),
        ];
        let venvs = vec!["a".into(), "b".into(), "c".into(), "d".into()];
        // Rolled back to r1: r1 is live; r4 is the last good by date.
        let p = plan_prune(&rels, Some("r1"), Some("a"), Some("r4"), 1, &venvs);
        assert_eq!(p.remove_releases, vec!["r3", "r2"]);
        assert_eq!(p.remove_venvs, vec!["b", "c"]);
    }

    fn deploy_record(release: &str, backup: Option<&str>) -> Record {
        Record {
            action: "deploy".into(),
            git_ref: Some("main".into()),
            release: Some(release.into()),
            outcome: "ok".into(),
            backup: backup.map(str::to_string),
            ..Record::default()
        }
    }

    #[test]
    fn the_history_pins_pre_migrate_backups_of_releases_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (state, releases) = (dir.path().join("state"), dir.path().join("releases"));
        fs_err::create_dir_all(&state).unwrap();
        fs_err::create_dir_all(releases.join("r2")).unwrap();
        fs_err::create_dir_all(releases.join("r3")).unwrap();
        let b = "/srv/sum/acme/backups/acme-20261122T010000Z.sql.gz";
        for rec in [
            deploy_record(
                "r1",
                Some("/srv/sum/acme/backups/acme-20261120T010000Z.sql.gz"),
            ),
            deploy_record("r2", Some(b)),
            deploy_record("r3", None),
        ] {
            append(&state, &rec).unwrap();
        }
        let pinned = pre_migrate_backups(&state, &releases).unwrap();
        // r1 was pruned: its backup goes by the normal rules.
        assert_eq!(
            pinned.into_iter().collect::<Vec<_>>(),
            vec![("acme-20261122T010000Z.sql.gz".to_string(), "r2".to_string())]
        );
        // No history, no releases directory: nothing pinned.
        let empty = tempfile::tempdir().unwrap();
        assert!(
            pre_migrate_backups(empty.path(), &empty.path().join("releases"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_previous_release_is_the_one_live_before_as_the_history_tells() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        let record = |action: &str, release: &str, previous: Option<&str>, outcome: &str| {
            let mut r = deploy_record(release, None);
            r.action = action.into();
            r.previous = previous.map(str::to_string);
            r.outcome = outcome.into();
            append(state, &r).unwrap();
        };
        assert_eq!(previous_live(state, "r1"), None, "no history");
        record("deploy", "r1", None, "ok");
        assert_eq!(previous_live(state, "r1"), None, "a first deploy");
        record("deploy", "r2", Some("r1"), "ok");
        assert_eq!(previous_live(state, "r2").as_deref(), Some("r1"));
        // r3 swapped in, not recorded yet (its deploy renders Caddy then).
        assert_eq!(previous_live(state, "r3").as_deref(), Some("r2"));
        // r3 failed and was rolled back; r4 only prepared: r2 still follows r1.
        record("deploy", "r3", Some("r2"), "rolled-back");
        record("deploy", "r4", Some("r2"), "prepared");
        record("deploy", "r5", Some("r2"), "failed");
        assert_eq!(previous_live(state, "r2").as_deref(), Some("r1"));
        // A rollback to r1: before and after its record, r2 is the previous.
        assert_eq!(previous_live(state, "r1").as_deref(), Some("r2"));
        record("rollback", "r1", Some("r2"), "ok");
        assert_eq!(previous_live(state, "r1").as_deref(), Some("r2"));
        record("deploy", "r6", Some("r1"), "ok");
        assert_eq!(previous_live(state, "r6").as_deref(), Some("r1"));
    }

    #[test]
    fn history_lines_cut_short_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Record {
            action: "deploy".into(),
            started_utc: "a".into(),
            finished_utc: "b".into(),
            who: "root".into(),
            git_ref: Some("main".into()),
            outcome: "ok".into(),
            ..Record::default()
        };
        append(dir.path(), &rec).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(history_path(dir.path()))
            .unwrap()
            .write_all(b"{\"action\": \"dep")
            .unwrap();
        append(dir.path(), &rec).unwrap();
        assert_eq!(history(dir.path()).unwrap().len(), 2);
    }
}
