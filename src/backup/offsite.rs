//! Off-host copies (`[backup] offsite = "<remote>:<path>"`, docs/backups.md
//! "Off-host copies"): after each run, every verified local backup (dump
//! and manifest) that the remote lacks is copied to
//! `<remote>:<path>/<site>/` with Debian's rclone, checked there (size,
//! and a hash where the remote has one; `rclone cryptcheck` through a
//! `crypt` remote), and only then recorded as off-host in the site's
//! `state/offsite.json`. A run whose copy fails leaves the local backup as
//! it is, and the next run copies whatever is still missing, so a night
//! without the remote leaves no hole. The remote keeps the same
//! daily/weekly/monthly backups as the local directory, counted over the
//! verified off-host copies only, and only our own file names are ever
//! deleted there. The media directory is mirrored beside them
//! (`<site>/media/`), so only what changed travels; what the mirror
//! replaces or deletes is kept in `<site>/media-replaced/<UTC>/`. Restores
//! from the target are `offsite_fetch`.
//!
//! The remotes live in one root-only rclone configuration,
//! `/etc/sum/rclone.conf`, never in the site file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backup::catalog::{self, Listed};
pub(crate) use crate::backup::rclone::{name_list, Rclone};
use crate::backup::retention::{self, Keep};
use crate::config::layout::{Root, SiteLayout, RCLONE_CONF};
use crate::config::site::Site;
use crate::system::timefmt;

/// Where a site's copies go: `<remote>:<path>/<site>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub remote: String,
    pub dir: String,
}

/// The site's off-host target, when it has one.
pub fn target(site: &Site) -> Option<Target> {
    let offsite = site.backup.offsite.as_deref()?;
    let (remote, path) = offsite.split_once(':')?;
    Some(Target {
        remote: remote.to_string(),
        dir: format!("{remote}:{}/{}", path.trim_end_matches('/'), site.name),
    })
}

/// `state/offsite.json`: the backups verified on the target.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Record {
    pub target: String,
    /// Dump name → how its copy was verified and when.
    #[serde(default)]
    pub copies: BTreeMap<String, Copy>,
    /// When the media directory was last mirrored and checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_utc: Option<String>,
    /// The `media-replaced/<UTC>` directories the mirror filled, so that
    /// retention needs no listing to find them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaced: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Copy {
    pub verified_utc: String,
    /// `hash` (size and a hash both sides have), `cryptcheck` (through a
    /// crypt remote) or `size` (the remote has no hash in common).
    pub check: String,
    pub files: Vec<String>,
}

fn record_path(root: &Root, site: &str) -> PathBuf {
    root.path(SiteLayout::new(site).state).join("offsite.json")
}

/// The record of `target`; a record of another target (the site file
/// changed) counts for nothing.
pub fn load_record(root: &Root, site: &str, target: &Target) -> Record {
    fs_err::read(record_path(root, site))
        .ok()
        .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
        .filter(|r| r.target == target.dir)
        .unwrap_or_else(|| Record {
            target: target.dir.clone(),
            ..Record::default()
        })
}

fn save_record(root: &Root, site: &str, record: &Record) -> Result<(), String> {
    let path = record_path(root, site);
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let text = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
    crate::system::fsutil::write_atomic(&path, &text, 0o600).map_err(|e| e.to_string())
}

/// What [`sync`] did.
#[derive(Debug, Default)]
pub struct Report {
    pub copied: Vec<String>,
    pub verified: Vec<(String, String)>,
    pub deleted: Vec<String>,
    /// What the media mirror did.
    pub media: Option<String>,
}

/// The files of a local backup that go off-host: the dump and its
/// manifest. Its media archive stays local: the media directory is
/// mirrored instead, so a large media directory is not sent whole every
/// night.
fn files_of(dump: &str) -> Vec<String> {
    vec![dump.to_string(), format!("{dump}.json")]
}

/// Copies every verified local backup the target lacks, verifies what is
/// not yet recorded as verified there, records it, mirrors the media
/// directory (`media`, when given), and applies retention on the target
/// (`retain`: the rules and the backups pinned as pre-migrate backups,
/// as locally; none when the deploy history could not be read).
/// An error when any verified local backup is not off-host at the end, or
/// the media mirror failed; what was verified is recorded either way.
pub fn sync(
    root: &Root,
    site: &Site,
    dir: &Path,
    media: Option<&Path>,
    retain: Option<(Keep, &BTreeMap<String, String>)>,
) -> Result<Report, String> {
    let Some(target) = target(site) else {
        return Ok(Report::default());
    };
    let rclone = Rclone::new(root);
    let kind = configured(root, &rclone, &target)?;
    let local: Vec<Listed> = catalog::list(&site.name, dir)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|b| b.verified)
        .collect();
    let mut run = Run {
        record: load_record(root, &site.name, &target),
        rclone,
        target,
        kind,
        dir,
        remote: BTreeMap::new(),
        report: Report::default(),
        errors: Vec::new(),
    };
    run.copy_backups(&local)?;
    if let Some(m) = media {
        run.mirror_media(m);
    }
    if let Some((keep, pinned)) = retain {
        run.prune(site, &local, keep, pinned);
    }
    save_record(root, &site.name, &run.record)?;
    if run.errors.is_empty() {
        Ok(run.report)
    } else {
        Err(run.errors.join("\n"))
    }
}

/// One [`sync`] in progress.
struct Run<'a> {
    rclone: Rclone,
    target: Target,
    /// The remote's type (`crypt` is checked with `cryptcheck`).
    kind: String,
    dir: &'a Path,
    record: Record,
    /// The target's files and sizes: listed once, then kept up to date
    /// with what this run copied and deleted.
    remote: BTreeMap<String, u64>,
    report: Report,
    errors: Vec<String>,
}

impl Run<'_> {
    /// Copies and verifies the backups not recorded as off-host yet.
    fn copy_backups(&mut self, local: &[Listed]) -> Result<(), String> {
        self.remote = self.rclone.list(&self.target.dir)?;
        let remote = &self.remote;
        let pending: Vec<&Listed> = local
            .iter()
            .filter(|b| !self.record.copies.contains_key(&b.file))
            .collect();
        let mut missing = Vec::new();
        for b in &pending {
            for f in files_of(&b.file) {
                let size = fs_err::metadata(self.dir.join(&f)).map(|m| m.len()).ok();
                if remote.get(&f).copied() != size {
                    missing.push(f);
                }
            }
        }
        // What rclone compared by hash on both sides as it copied it is
        // not checked a second time (a crypt remote has no hash to compare).
        let before = self.errors.len();
        let mut checked = self.copy_files(&missing, false)?;
        let reachable = self.errors.len() == before;
        for b in &pending {
            let files = files_of(&b.file);
            let mut verified = self.verify_copy(&files, &checked);
            if verified.is_err() && reachable {
                // A copy of the same size that differs (a run cut short on
                // a remote that writes in place): copied again, whatever
                // its size and time, and checked again.
                checked.extend(self.copy_files(&files, true)?);
                verified = self.verify_copy(&files, &checked);
            }
            match verified {
                Ok(check) => {
                    self.report.verified.push((b.file.clone(), check.clone()));
                    let copy = Copy {
                        verified_utc: timefmt::iso_utc(timefmt::now_unix()),
                        check,
                        files,
                    };
                    self.record.copies.insert(b.file.clone(), copy);
                }
                Err(e) => self.errors.push(format!("{}: {e}", b.file)),
            }
        }
        Ok(())
    }

    /// Copies `files` (all of them with `force`, even those the remote has
    /// with the same size and time); the ones rclone compared by hash as it
    /// copied them. A failed copy is one of the run's errors.
    fn copy_files(
        &mut self,
        files: &[String],
        force: bool,
    ) -> Result<BTreeMap<String, String>, String> {
        if files.is_empty() {
            return Ok(BTreeMap::new());
        }
        let list = name_list(files)?;
        let from = list.path().display().to_string();
        let src = self.dir.display().to_string();
        let mut args = vec!["copy", "-vv", "--no-traverse"];
        if force {
            args.push("--ignore-times");
        }
        args.extend(["--files-from", &from, &src, &self.target.dir]);
        match self.rclone.run(&args) {
            Ok((_, log)) => {
                for f in files {
                    let size = fs_err::metadata(self.dir.join(f)).map_or(0, |m| m.len());
                    self.remote.insert(f.clone(), size);
                    if !self.report.copied.contains(f) {
                        self.report.copied.push(f.clone());
                    }
                }
                Ok(crate::backup::rclone::hash_checked_on_transfer(&log))
            }
            Err(f) => {
                self.errors.push(f.message);
                Ok(BTreeMap::new())
            }
        }
    }

    /// How `files` are known to be the same on the target: compared by
    /// hash as they were copied, or `rclone check` (`cryptcheck`) now.
    fn verify_copy(
        &self,
        files: &[String],
        checked: &BTreeMap<String, String>,
    ) -> Result<String, String> {
        if self.kind != "crypt" && files.iter().all(|f| checked.contains_key(f)) {
            return Ok("hash".to_string());
        }
        verify(&self.rclone, self.dir, &self.target, &self.kind, files)
    }

    /// Mirrors the media directory to `<target>/media`: only what changed
    /// travels, and what the mirror replaces or deletes is moved to
    /// `<target>/media-replaced/<UTC>/` rather than lost. The sync is its
    /// own check: it compares every file on both sides (size and time) and
    /// a hash of each file it transfers where the remote has one, and
    /// fails unless all of them match; a second listing after it would
    /// only compare sizes again.
    fn mirror_media(&mut self, media: &Path) {
        let stamp = timefmt::compact_utc(timefmt::now_unix());
        let dest = format!("{}/media", self.target.dir);
        let replaced = format!("{}/media-replaced/{stamp}", self.target.dir);
        let src = media.display().to_string();
        let args = [
            "sync",
            "-v",
            "--links",
            "--backup-dir",
            &replaced,
            &src,
            &dest,
        ];
        let log = match self.rclone.run(&args) {
            Ok((_, log)) => log,
            Err(f) => return self.errors.push(format!("media: {}", f.message)),
        };
        let copied = log.lines().filter(|l| l.contains(": Copied (")).count();
        // What the mirror moved aside, counted where it went: rclone names
        // the move differently by backend (a server-side move or copy).
        // (Listed only when the log says something was moved or deleted.)
        let touched = log
            .lines()
            .any(|l| l.contains(": Moved") || l.contains(": Deleted") || l.contains("server-side"));
        let moved = if touched {
            match self.rclone.run(&["lsf", "-R", "--files-only", &replaced]) {
                Ok((out, _)) => out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count(),
                Err(f) if f.code == Some(3) => 0,
                Err(f) => return self.errors.push(format!("media: {}", f.message)),
            }
        } else {
            0
        };
        if moved > 0 {
            self.record.replaced.push(stamp);
        }
        self.report.media = Some(format!(
            "media mirrored to {dest}: {copied} file(s) copied, {moved} replaced or deleted \
             kept in {replaced}"
        ));
        self.record.media_utc = Some(timefmt::iso_utc(timefmt::now_unix()));
    }
}
/// The remote is in the configuration: its type, or what is wrong.
pub(crate) fn configured(root: &Root, rclone: &Rclone, target: &Target) -> Result<String, String> {
    let conf = root.path(RCLONE_CONF);
    if !conf.is_file() {
        return Err(format!(
            "{} does not exist: define the remote `{}` there (root-only, mode 0600) with \
             `rclone config --config {}`",
            conf.display(),
            target.remote,
            RCLONE_CONF
        ));
    }
    let remotes = rclone.remotes()?;
    match remotes.get(&target.remote) {
        Some(kind) => Ok(kind.clone()),
        None => Err(format!(
            "the remote `{}` is not defined in {} (it defines: {})",
            target.remote,
            conf.display(),
            if remotes.is_empty() {
                "nothing".to_string()
            } else {
                remotes.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        )),
    }
}

/// `rclone check` (or `cryptcheck`) of `files`: how they were verified.
fn verify(
    rclone: &Rclone,
    dir: &Path,
    target: &Target,
    kind: &str,
    files: &[String],
) -> Result<String, String> {
    let list = name_list(files)?;
    let from = list.path().display().to_string();
    let src = dir.display().to_string();
    let verb = if kind == "crypt" {
        "cryptcheck"
    } else {
        "check"
    };
    let args = [
        verb,
        "--one-way",
        "--files-from",
        &from,
        "--combined",
        "-",
        &src,
        &target.dir,
    ];
    let (out, stderr) = match rclone.run(&args) {
        Ok(r) => r,
        Err(f) => return Err(f.message),
    };
    let same: BTreeSet<&str> = std::str::from_utf8(&out)
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.strip_prefix("= "))
        .collect();
    if let Some(f) = files.iter().find(|f| !same.contains(f.as_str())) {
        return Err(format!("{f} is not the same on {}", target.dir));
    }
    Ok(if verb == "cryptcheck" {
        "cryptcheck".into()
    } else if stderr.contains("No common hash found") {
        "size".into()
    } else {
        "hash".into()
    })
}

impl Run<'_> {
    /// Retention on the target, over the verified off-host copies: the
    /// same rules as the local directory, with the same pre-migrate
    /// backups kept, only our own names recorded as ours, never the newest
    /// verified copy. Then the replaced media older
    /// than the oldest copy kept.
    fn prune(
        &mut self,
        site: &Site,
        local: &[Listed],
        keep: Keep,
        pinned: &BTreeMap<String, String>,
    ) {
        let remote = &self.remote;
        let mut listed: Vec<Listed> = remote
            .iter()
            .filter_map(|(name, size)| {
                let unix = catalog::parse_backup_name(&site.name, name)?;
                let here = local.iter().find(|l| &l.file == name);
                Some(Listed {
                    file: name.clone(),
                    taken_utc: timefmt::iso_utc(unix),
                    unix,
                    size: *size,
                    verified: self.record.copies.contains_key(name),
                    shrunk: here.and_then(|l| l.shrunk.clone()),
                    ..Listed::default()
                })
            })
            .collect();
        listed.sort_by_key(|b| std::cmp::Reverse(b.unix));
        let doomed: Vec<String> = retention::to_delete(&listed, keep, pinned)
            .into_iter()
            .filter(|name| self.record.copies.contains_key(name))
            .collect();
        let mut files: Vec<String> = Vec::new();
        for name in &doomed {
            let media = crate::backup::media::media_name(name);
            for f in [name.clone(), format!("{name}.json"), media] {
                if remote.contains_key(&f) {
                    files.push(f);
                }
            }
        }
        if !files.is_empty() {
            match self.delete(&files) {
                Ok(()) => {
                    for name in &doomed {
                        self.record.copies.remove(name);
                    }
                    self.report.deleted = doomed;
                }
                Err(e) => self.errors.push(e),
            }
        }
        self.prune_replaced_media(site);
    }

    fn delete(&self, files: &[String]) -> Result<(), String> {
        let list = name_list(files)?;
        let from = list.path().display().to_string();
        self.rclone
            .run(&["delete", "--files-from", &from, &self.target.dir])
            .map(|_| ())
            .map_err(|f| f.message)
    }

    /// `media-replaced/<UTC>` directories older than the oldest verified
    /// copy kept: no kept backup is older than what they hold.
    fn prune_replaced_media(&mut self, site: &Site) {
        let oldest = self
            .record
            .copies
            .keys()
            .filter_map(|n| catalog::parse_backup_name(&site.name, n))
            .min();
        let Some(oldest) = oldest else { return };
        let base = format!("{}/media-replaced", self.target.dir);
        let mut kept = Vec::new();
        for d in std::mem::take(&mut self.record.replaced) {
            let old = timefmt::parse_compact_utc(&d).is_some_and(|t| t < oldest);
            if !old {
                kept.push(d);
            } else if let Err(f) = self.rclone.run(&["purge", &format!("{base}/{d}")]) {
                self.errors.push(f.message);
                kept.push(d);
            } else {
                self.report.deleted.push(format!("media-replaced/{d}"));
            }
        }
        self.record.replaced = kept;
    }
}

/// `sumctl check`: whether the site's target is usable, told apart: no
/// configuration, a remote the configuration lacks, or one that does not
/// answer. None for a site without `offsite`.
pub fn check(root: &Root, site: &Site) -> Option<Result<String, String>> {
    let target = target(site)?;
    let rclone = Rclone::new(root);
    Some(configured(root, &rclone, &target).and_then(|kind| {
        rclone
            .list(&target.dir)
            .map(|files| {
                format!(
                    "off-host: {} ({kind}) answers; {} file(s) there",
                    target.dir,
                    files.len()
                )
            })
            .map_err(|e| {
                format!(
                    "the remote `{}` is defined but {} does not answer: {e}",
                    target.remote, target.dir
                )
            })
    }))
}
