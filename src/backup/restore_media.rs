//! `sum-restore --media`: a backup's media archive back into the site's
//! persistent media directory, with no moment where that directory holds
//! half of one and half of the other.
//!
//! The archive is checked completely before anything is touched: its size
//! and SHA-256 against the manifest, then every tar entry read to the end
//! of the gzip stream (its CRC), refusing any entry that could land outside
//! the directory (an absolute path, a `..`, a path under a link the archive
//! itself holds) and devices, pipes and hard links, which `sum-backup`
//! never archives from uploads. It is then unpacked into a new directory
//! beside the media directory (same parent, so the same file system),
//! given the owner, group and modes a deploy gives media, and synced. Two
//! renames put it in place and keep the old directory beside it; until the
//! second one the media directory is untouched, and a failure removes the
//! new directory.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use crate::backup::catalog::Manifest;
use crate::backup::media::{self, Entry, MediaInfo};
use crate::config::layout::Root;
use crate::system::timefmt;

/// Why media were not restored.
#[derive(Debug)]
pub struct MediaError {
    pub message: String,
    /// The media directory is as it was: false only when a swap could not
    /// put it back (the message says where it is).
    pub untouched: bool,
}

impl std::fmt::Display for MediaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn err(msg: impl Into<String>) -> MediaError {
    MediaError {
        message: msg.into(),
        untouched: true,
    }
}

/// A backup's media archive, checked against its manifest.
#[derive(Debug, Clone)]
pub struct Archive {
    pub path: PathBuf,
    pub info: MediaInfo,
}

/// The media archive the manifest of `dump` records, beside it, checked
/// completely ([`check`]); a refusal says that nothing was changed.
pub fn checked_archive(
    dump: &Path,
    manifest: Option<&Manifest>,
    log: &mut dyn Write,
) -> Result<Archive, MediaError> {
    let archive =
        archive_of(dump, manifest).map_err(|e| err(format!("{e}; nothing was changed")))?;
    let _ = writeln!(
        log,
        "verified the media archive {} ({} bytes, sha256 and {} entries as its manifest \
         records; every entry read)",
        archive.path.display(),
        archive.info.size,
        archive.info.entries
    );
    Ok(archive)
}

fn archive_of(dump: &Path, manifest: Option<&Manifest>) -> Result<Archive, MediaError> {
    let shown = dump.display();
    let Some(m) = manifest else {
        return Err(err(format!(
            "{shown} has no manifest, so it has no media archive to restore"
        )));
    };
    let Some(info) = &m.media else {
        return Err(err(format!(
            "{shown} has no media archive: its manifest records none ([backup] media was \
             off, the site had no media directory, or it is the safety backup of a restore)"
        )));
    };
    let name = Path::new(&info.file);
    if name.components().count() != 1
        || !matches!(name.components().next(), Some(Component::Normal(_)))
    {
        return Err(err(format!(
            "the manifest of {shown} names the media archive {:?}, which is not a file name",
            info.file
        )));
    }
    let archive = Archive {
        path: dump.with_file_name(name),
        info: info.clone(),
    };
    check(&archive)?;
    Ok(archive)
}

/// Refuses an archive that is not exactly what its manifest records or
/// holds an entry that must not be unpacked.
fn check(archive: &Archive) -> Result<(), MediaError> {
    let (path, want) = (&archive.path, &archive.info);
    let refuse = |why: String| err(format!("refusing to restore the media: {why}"));
    let size = match fs_err::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(refuse(format!("{} does not exist", path.display())));
        }
        Err(e) => return Err(refuse(e.to_string())),
    };
    if size != want.size {
        return Err(refuse(format!(
            "{} is {size} bytes, but its manifest records {}",
            path.display(),
            want.size
        )));
    }
    let (sha256, _) = crate::backup::hashio::hash_file(path).map_err(|e| refuse(e.to_string()))?;
    if sha256 != want.sha256 {
        return Err(refuse(format!(
            "{} does not match its manifest: sha256 {sha256}, but the manifest records {}",
            path.display(),
            want.sha256
        )));
    }
    let mut seen = Seen::default();
    let read = media::read_entries(path, &mut |entry| {
        seen.admit(entry)
            .map_err(|why| format!("{}: {why}", path.display()))?;
        std::io::copy(entry, &mut std::io::sink())
            .map(drop)
            .map_err(|e| format!("{} is not a complete media archive: {e}", path.display()))
    })
    .map_err(refuse)?;
    seen.nothing_under_a_link()
        .map_err(|why| refuse(format!("{}: {why}", path.display())))?;
    if read.entries != want.entries {
        return Err(refuse(format!(
            "{} holds {} entries, but its manifest records {}",
            path.display(),
            read.entries,
            want.entries
        )));
    }
    Ok(())
}

/// The entries of an archive so far: their paths (relative, without `.`),
/// and which of them are symbolic links.
#[derive(Default)]
struct Seen {
    paths: Vec<(PathBuf, bool)>,
    links: HashSet<PathBuf>,
}

impl Seen {
    /// Admits one entry, or says why it must not be unpacked.
    fn admit(&mut self, entry: &Entry) -> Result<(), String> {
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = entry
            .path()
            .map_err(|e| format!("entry {shown:?} has a name that cannot be read: {e}"))?;
        let rel = relative(&path).map_err(|why| format!("entry {shown:?} {why}"))?;
        let kind = entry.header().entry_type();
        let refused = match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => None,
            EntryType::Directory | EntryType::Symlink => None,
            // Metadata for the entries after it, not a file.
            EntryType::XGlobalHeader => return Ok(()),
            EntryType::Link => Some("a hard link"),
            EntryType::Char | EntryType::Block => Some("a device file"),
            EntryType::Fifo => Some("a named pipe"),
            _ => Some("of a type that is not restored"),
        };
        if let Some(what) = refused {
            return Err(format!(
                "entry {shown:?} is {what}; uploaded media are files, directories and \
                 symbolic links"
            ));
        }
        if rel.as_os_str().is_empty() && kind != EntryType::Directory {
            return Err(format!(
                "entry {shown:?} names the media directory itself but is not a directory"
            ));
        }
        let link = kind == EntryType::Symlink;
        if link {
            self.links.insert(rel.clone());
        }
        self.paths.push((rel, link));
        Ok(())
    }

    /// No entry lies under, or in the place of, a link of the archive:
    /// unpacking it would write wherever the link points.
    fn nothing_under_a_link(&self) -> Result<(), String> {
        for (path, link) in &self.paths {
            let parents = path.ancestors().skip(1);
            let under = parents
                .filter(|a| !a.as_os_str().is_empty())
                .find(|a| self.links.contains(*a));
            if let Some(l) = under.or((!link && self.links.contains(path)).then_some(path)) {
                return Err(format!(
                    "entry {:?} lies under the symbolic link {:?} of the archive; unpacking \
                     it would write where the link points",
                    path.display().to_string(),
                    l.display().to_string()
                ));
            }
        }
        Ok(())
    }
}

/// A tar entry's path as a relative path, without `.` components; why not
/// when it is absolute or goes up.
fn relative(path: &Path) -> Result<PathBuf, &'static str> {
    let mut rel = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(part) => rel.push(part),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
            Component::ParentDir => return Err("has a `..` component"),
        }
    }
    Ok(rel)
}

/// The restored media, unpacked beside the live media directory and not
/// yet in its place. Dropped before [`Staged::swap`], it removes itself.
#[derive(Debug)]
pub struct Staged {
    /// The live media directory.
    pub media: PathBuf,
    /// `<media>.restoring-<ts>`: the restored media until the swap.
    pub staging: PathBuf,
    /// `<media>.before-restore-<ts>`: where the old media go.
    pub aside: PathBuf,
    /// Unpacked directories of restores that were killed, now removed.
    pub removed: Vec<PathBuf>,
    placed: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.placed {
            let _ = fs_err::remove_dir_all(&self.staging);
        }
    }
}

/// Who owns restored media: the site's user and the group Caddy reads
/// them with (the site's group without a `caddy` group); None under a
/// test root, where there is no site account.
pub fn media_owner(site_account: Option<(u32, u32)>) -> Option<(u32, u32)> {
    site_account.map(|(uid, gid)| (uid, crate::system::accounts::caddy_gid().unwrap_or(gid)))
}

/// Unpacks `archive` beside the site's media directory (where `sum-backup`
/// archives it from), owned by the site's account (`site_account`, None
/// under a test root) and Caddy's group; a failure says that nothing was
/// changed.
pub fn stage_site_media(
    root: &Root,
    site: &str,
    archive: &Archive,
    site_account: Option<(u32, u32)>,
    log: &mut dyn Write,
) -> Result<Staged, MediaError> {
    let media_dir = media::site_media_dir(root, site);
    let staged = stage(
        archive,
        &media_dir,
        media_owner(site_account),
        timefmt::now_unix(),
    )
    .map_err(|e| {
        err(format!(
            "{e}; nothing was changed: the media directory {} is as it was",
            media_dir.display()
        ))
    })?;
    for p in &staged.removed {
        let _ = writeln!(
            log,
            "removed the leftover of an interrupted restore: {}",
            p.display()
        );
    }
    let _ = writeln!(
        log,
        "unpacked the media archive into {}",
        staged.staging.display()
    );
    Ok(staged)
}

/// Unpacks `archive` into a new directory beside `media_dir`, owned by
/// `owner` (see [`media_owner`]) with the modes of media, and synced; the
/// media directory itself is not touched.
pub fn stage(
    archive: &Archive,
    media_dir: &Path,
    owner: Option<(u32, u32)>,
    unix: u64,
) -> Result<Staged, MediaError> {
    let what = format!("unpacking {}", archive.path.display());
    stage_with(media_dir, owner, unix, &what, &|into| unpack(archive, into))
}

/// [`stage`] with what fills the new directory (`fill`, described by
/// `what`): an archive unpacked, or the off-host mirror copied
/// (`offsite_fetch`).
pub fn stage_with(
    media_dir: &Path,
    owner: Option<(u32, u32)>,
    unix: u64,
    what: &str,
    fill: &dyn Fn(&Path) -> Result<(), String>,
) -> Result<Staged, MediaError> {
    let media = live_dir(media_dir)?;
    let (parent, name) = parent_and_name(&media)?;
    let removed = remove_leftovers(parent, &name)?;
    let stamp = timefmt::compact_utc(unix);
    let staging = parent.join(format!("{name}.restoring-{stamp}"));
    let aside = parent.join(format!("{name}.before-restore-{stamp}"));
    if fs_err::symlink_metadata(&aside).is_ok() {
        return Err(err(format!(
            "{} is in the way of the media directory as it is now",
            aside.display()
        )));
    }
    fs_err::create_dir(&staging).map_err(|e| err(e.to_string()))?;
    let staged = Staged {
        media,
        staging,
        aside,
        removed,
        placed: false,
    };
    let unpacked = fill(&staged.staging)
        .and_then(|()| give(&staged.staging, owner).map_err(|e| e.to_string()))
        .and_then(|()| sync(&staged.staging).map_err(|e| e.to_string()));
    unpacked.map_err(|e| {
        err(format!(
            "{what} into {} failed: {e}",
            staged.staging.display()
        ))
    })?;
    Ok(staged)
}

/// The media directory to replace: a symbolic link is followed, so the
/// restored media land where the link points; a mount point is refused,
/// since a rename cannot move it.
fn live_dir(media_dir: &Path) -> Result<PathBuf, MediaError> {
    let media = match fs_err::symlink_metadata(media_dir) {
        Ok(m) if m.file_type().is_symlink() => {
            fs_err::canonicalize(media_dir).map_err(|e| err(e.to_string()))?
        }
        _ => media_dir.to_path_buf(),
    };
    let Ok(m) = fs_err::symlink_metadata(&media) else {
        return Ok(media);
    };
    if !m.is_dir() {
        return Err(err(format!("{} is not a directory", media.display())));
    }
    let (parent, _) = parent_and_name(&media)?;
    let on = fs_err::metadata(parent).map_err(|e| err(e.to_string()))?;
    if on.dev() != m.dev() {
        return Err(err(format!(
            "{} is a mount point: the restore unpacks beside it and renames, which cannot \
             move a mount point; mount the file system one level up instead",
            media.display()
        )));
    }
    Ok(media)
}

fn parent_and_name(media: &Path) -> Result<(&Path, String), MediaError> {
    match (media.parent(), media.file_name()) {
        (Some(p), Some(n)) => Ok((p, n.to_string_lossy().into_owned())),
        _ => Err(err(format!(
            "{} has no parent directory to unpack beside",
            media.display()
        ))),
    }
}

/// Removes `<name>.restoring-<ts>` directories beside the media directory:
/// what restores that were killed unpacked (the site's lock is held, so no
/// restore is running).
fn remove_leftovers(parent: &Path, name: &str) -> Result<Vec<PathBuf>, MediaError> {
    let prefix = format!("{name}.restoring-");
    let mut removed = Vec::new();
    for entry in fs_err::read_dir(parent).map_err(|e| err(e.to_string()))? {
        let entry = entry.map_err(|e| err(e.to_string()))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let ours = file
            .strip_prefix(&prefix)
            .and_then(timefmt::parse_compact_utc)
            .is_some();
        if ours && entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs_err::remove_dir_all(entry.path()).map_err(|e| err(e.to_string()))?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

/// Unpacks every entry into `into`, never over an existing file and never
/// outside it, checking again that the archive is the one checked before.
fn unpack(archive: &Archive, into: &Path) -> Result<(), String> {
    let read = media::read_entries(&archive.path, &mut |entry| {
        if entry.header().entry_type() == EntryType::XGlobalHeader {
            return Ok(());
        }
        entry.set_preserve_permissions(false);
        entry.set_preserve_mtime(true);
        entry.set_unpack_xattrs(false);
        match entry.unpack_in(into) {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "entry {:?} would land outside {}",
                String::from_utf8_lossy(&entry.path_bytes()),
                into.display()
            )),
            Err(e) => Err(with_causes(&e)),
        }
    })?;
    if read.sha256 != archive.info.sha256 || read.size != archive.info.size {
        return Err(format!(
            "{} changed after it was checked",
            archive.path.display()
        ));
    }
    Ok(())
}

/// An error with what caused it: the tar crate says which entry failed and
/// keeps why (`No space left on device`) as its source.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// Gives the unpacked tree the owner and modes of media (see
/// `crate::deploy::dirs`): directories 2750, so Caddy's group can read
/// and what the app creates inherits the group; files keep their modes,
/// without set-user-ID, set-group-ID or sticky bits, and can be read and
/// written by the site's user and read by the group.
fn give(dir: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    crate::system::fsutil::walk(dir, &mut |p, m| {
        if let Some((uid, gid)) = owner {
            nix::unistd::fchownat(
                None,
                p,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| std::io::Error::other(format!("failed to chown {}: {e}", p.display())))?;
        }
        let mode = if m.file_type().is_symlink() {
            return Ok(());
        } else if m.is_dir() {
            0o2750
        } else {
            (m.permissions().mode() & 0o777) | 0o640
        };
        fs_err::set_permissions(p, std::fs::Permissions::from_mode(mode))
    })
}

/// Writes everything unpacked to disk before it is renamed into place.
fn sync(dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let d = fs_err::File::open(dir)?;
    nix::unistd::syncfs(d.as_raw_fd())
        .map_err(|e| std::io::Error::other(format!("failed to sync {}: {e}", dir.display())))
}

/// The media directory after a swap, and where the old one is (None when
/// there was none).
#[derive(Debug)]
pub struct Swapped {
    pub media: PathBuf,
    pub aside: Option<PathBuf>,
}

impl Staged {
    /// Moves the media directory aside and the restored one into its place.
    /// On failure the media directory is as it was (the one case it cannot
    /// be is said, with the command that puts it back).
    pub fn swap(mut self) -> Result<Swapped, MediaError> {
        let had = fs_err::symlink_metadata(&self.media).is_ok();
        if had {
            fs_err::rename(&self.media, &self.aside)
                .map_err(|e| err(format!("failed to move the media aside: {e}")))?;
        }
        if let Err(e) = fs_err::rename(&self.staging, &self.media) {
            if !had {
                return Err(err(format!("failed to move the restored media in: {e}")));
            }
            if let Err(back) = fs_err::rename(&self.aside, &self.media) {
                // The restored media stay too: either can be put in place.
                self.placed = true;
                return Err(MediaError {
                    untouched: false,
                    ..err(format!(
                        "failed to move the restored media in ({e}), and then to move the media \
                     back ({back}): they are in {aside} and the restored ones in {staging}; \
                     put the media back with `mv {aside} {media}`",
                        aside = self.aside.display(),
                        staging = self.staging.display(),
                        media = self.media.display()
                    ))
                });
            }
            return Err(err(format!(
                "failed to move the restored media in: {e}; moved the media back"
            )));
        }
        self.placed = true;
        if let Some(parent) = self.media.parent() {
            let _ = crate::system::fsutil::fsync_dir(parent);
        }
        Ok(Swapped {
            media: self.media.clone(),
            aside: had.then(|| self.aside.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(dir: &Path) -> Staged {
        Staged {
            media: dir.join("media"),
            staging: dir.join("media.restoring-20261122T020000Z"),
            aside: dir.join("media.before-restore-20261122T020000Z"),
            removed: vec![],
            placed: false,
        }
    }

    #[test]
    fn a_swap_that_fails_halfway_puts_the_media_back() {
        let d = tempfile::tempdir().unwrap();
        fs_err::create_dir(d.path().join("media")).unwrap();
        fs_err::write(d.path().join("media/cake.jpg"), "cake").unwrap();
        // The restored directory is gone: the second rename fails.
        let e = staged(d.path()).swap().unwrap_err().to_string();
        assert!(
            e.starts_with("failed to move the restored media in: failed to rename")
                && e.ends_with("; moved the media back"),
            "{e}"
        );
        assert_eq!(
            fs_err::read_to_string(d.path().join("media/cake.jpg")).unwrap(),
            "cake"
        );
        assert!(!d
            .path()
            .join("media.before-restore-20261122T020000Z")
            .exists());
    }

    #[test]
    fn a_swap_keeps_the_old_media_beside_the_new() {
        let d = tempfile::tempdir().unwrap();
        let s = staged(d.path());
        fs_err::create_dir(&s.media).unwrap();
        fs_err::write(s.media.join("old.txt"), "old").unwrap();
        fs_err::create_dir(&s.staging).unwrap();
        fs_err::write(s.staging.join("new.txt"), "new").unwrap();
        let aside = s.aside.clone();
        let done = s.swap().unwrap();
        assert_eq!(done.aside.as_deref(), Some(aside.as_path()));
        assert_eq!(
            fs_err::read_to_string(done.media.join("new.txt")).unwrap(),
            "new"
        );
        assert_eq!(
            fs_err::read_to_string(aside.join("old.txt")).unwrap(),
            "old"
        );
        assert!(!d.path().join("media.restoring-20261122T020000Z").exists());
    }

    #[test]
    fn a_dropped_stage_removes_what_it_unpacked() {
        let d = tempfile::tempdir().unwrap();
        let s = staged(d.path());
        fs_err::create_dir(&s.staging).unwrap();
        fs_err::write(s.staging.join("new.txt"), "new").unwrap();
        let staging = s.staging.clone();
        drop(s);
        assert!(!staging.exists());
    }

    #[test]
    fn paths_that_are_absolute_or_go_up_are_refused() {
        assert_eq!(relative(Path::new("./a/./b")), Ok(PathBuf::from("a/b")));
        assert_eq!(relative(Path::new("./")), Ok(PathBuf::new()));
        assert_eq!(
            relative(Path::new("/etc/passwd")),
            Err("is an absolute path")
        );
        assert_eq!(
            relative(Path::new("a/../../b")),
            Err("has a `..` component")
        );
    }
}
