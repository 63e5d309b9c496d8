//! `[deploy] shared` (SPEC §3): paths inside a release that live outside
//! it, in `/srv/sum/<site>/shared/<path>`, so that every release and every
//! rollback sees the same files (uploads, a local settings file, a cache).
//!
//! For each path, in a release that is not live yet: the shared copy is
//! created the first time, seeded from the release's own content when the
//! release has that path (an empty directory otherwise) and given to the
//! site's user; then the path in the release becomes a symlink to it.
//! Pruning only removes releases, so shared content is never deleted.
//! The site file already refused absolute paths and `..`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use nix::unistd::{Gid, Uid};

/// What happened to one shared path, for the deploy log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linked {
    /// The shared copy existed; the release now points at it.
    Existing(String),
    /// First use: seeded from the release's own content.
    Seeded(String),
    /// First use, and the release has no such path: an empty directory.
    Created(String),
}

impl std::fmt::Display for Linked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Linked::Existing(p) => write!(f, "{p} -> shared/{p}"),
            Linked::Seeded(p) => write!(f, "{p} -> shared/{p} (seeded from this release)"),
            Linked::Created(p) => write!(f, "{p} -> shared/{p} (created empty)"),
        }
    }
}

/// Links every shared path of `release` to `shared/<path>`. `owner` is the
/// site user's (uid, gid) for what is created; None leaves owners as they
/// are (test roots).
pub fn link(
    release: &Path,
    shared: &Path,
    paths: &[String],
    owner: Option<(u32, u32)>,
) -> Result<Vec<Linked>, String> {
    let mut done = Vec::new();
    for p in paths {
        if p.is_empty()
            || Path::new(p)
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(format!(
                "[deploy] shared: {p:?} is not a plain relative path inside the release"
            ));
        }
        let inside = release.join(p);
        let target = shared.join(p);
        // A parent inside the release that is itself a symlink could point
        // anywhere; only real directories are followed.
        if let Some(parent) = Path::new(p).parent() {
            let mut at = release.to_path_buf();
            for c in parent.components() {
                at.push(c);
                if let Ok(m) = fs_err::symlink_metadata(&at) {
                    if !m.is_dir() {
                        return Err(format!(
                            "[deploy] shared: {} in the release is not a directory, so {p} \
                             cannot be linked",
                            at.display()
                        ));
                    }
                }
            }
        }
        let outcome = if fs_err::symlink_metadata(&target).is_ok() {
            Linked::Existing(p.clone())
        } else {
            if let Some(parent) = target.parent() {
                create_dirs(parent, shared, owner)?;
            }
            match fs_err::symlink_metadata(&inside) {
                Ok(_) => {
                    copy_tree(&inside, &target, owner).map_err(|e| {
                        format!("seeding {} from the release: {e}", target.display())
                    })?;
                    Linked::Seeded(p.clone())
                }
                Err(_) => {
                    fs_err::create_dir(&target).map_err(|e| e.to_string())?;
                    give(&target, owner)?;
                    Linked::Created(p.clone())
                }
            }
        };
        match fs_err::symlink_metadata(&inside) {
            Ok(m) if m.is_dir() => fs_err::remove_dir_all(&inside).map_err(|e| e.to_string())?,
            Ok(_) => fs_err::remove_file(&inside).map_err(|e| e.to_string())?,
            Err(_) => {
                if let Some(parent) = inside.parent() {
                    fs_err::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
            }
        }
        fs_err::os::unix::fs::symlink(&target, &inside).map_err(|e| e.to_string())?;
        done.push(outcome);
    }
    Ok(done)
}

/// Creates `dir` and its missing parents below `base`, owned by `owner`.
fn create_dirs(dir: &Path, base: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
    if dir.exists() || dir == base {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent, base, owner)?;
    }
    fs_err::create_dir(dir).map_err(|e| e.to_string())?;
    give(dir, owner)
}

pub(super) fn give(path: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
    if let Some((uid, gid)) = owner {
        nix::unistd::fchownat(
            None,
            path,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| format!("failed to chown {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Copies a file, a symlink or a directory tree, keeping modes, owned by
/// `owner` (symlinks themselves, not what they point at).
pub(super) fn copy_tree(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    let m = fs_err::symlink_metadata(from)?;
    if m.file_type().is_symlink() {
        fs_err::os::unix::fs::symlink(fs_err::read_link(from)?, to)?;
    } else if m.is_dir() {
        fs_err::create_dir(to)?;
        fs_err::set_permissions(to, std::fs::Permissions::from_mode(m.permissions().mode()))?;
        for entry in fs_err::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()), owner)?;
        }
    } else {
        fs_err::copy(from, to)?;
    }
    give(to, owner).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let release = d.path().join("releases/r1");
        let shared = d.path().join("shared");
        fs_err::create_dir_all(release.join("acme/media/uploads")).unwrap();
        fs_err::write(release.join("acme/media/uploads/logo.png"), b"png").unwrap();
        fs_err::write(release.join("local.py"), b"DEBUG = False\n").unwrap();
        fs_err::create_dir_all(&shared).unwrap();
        (d, release, shared)
    }

    #[test]
    fn first_use_seeds_from_the_release_then_links() {
        let (_d, release, shared) = setup();
        let paths = vec![
            "acme/media".to_string(),
            "local.py".to_string(),
            "var/cache".to_string(),
        ];
        let done = link(&release, &shared, &paths, None).unwrap();
        assert_eq!(
            done,
            vec![
                Linked::Seeded("acme/media".into()),
                Linked::Seeded("local.py".into()),
                Linked::Created("var/cache".into()),
            ]
        );
        assert_eq!(
            fs_err::read(shared.join("acme/media/uploads/logo.png")).unwrap(),
            b"png"
        );
        assert_eq!(
            fs_err::read_to_string(shared.join("local.py")).unwrap(),
            "DEBUG = False\n"
        );
        assert!(shared.join("var/cache").is_dir());
        for p in &paths {
            let inside = release.join(p);
            assert!(
                fs_err::symlink_metadata(&inside)
                    .unwrap()
                    .file_type()
                    .is_symlink(),
                "{p}"
            );
            assert_eq!(fs_err::read_link(&inside).unwrap(), shared.join(p));
        }
        // Written through the release, lands in shared.
        fs_err::write(release.join("acme/media/new.txt"), b"upload").unwrap();
        assert_eq!(
            fs_err::read(shared.join("acme/media/new.txt")).unwrap(),
            b"upload"
        );
    }

    #[test]
    fn later_releases_link_to_what_is_there_and_never_overwrite_it() {
        let (d, release, shared) = setup();
        let paths = vec!["acme/media".to_string(), "local.py".to_string()];
        link(&release, &shared, &paths, None).unwrap();
        fs_err::write(shared.join("acme/media/upload.jpg"), b"user data").unwrap();
        fs_err::write(shared.join("local.py"), b"DEBUG = True\n").unwrap();

        // The next release ships other content at the same paths.
        let next = d.path().join("releases/r2");
        fs_err::create_dir_all(next.join("acme/media")).unwrap();
        fs_err::write(next.join("acme/media/other.png"), b"x").unwrap();
        fs_err::write(next.join("local.py"), b"DEBUG = False\n").unwrap();
        let done = link(&next, &shared, &paths, None).unwrap();
        assert_eq!(
            done,
            vec![
                Linked::Existing("acme/media".into()),
                Linked::Existing("local.py".into())
            ]
        );
        assert_eq!(
            fs_err::read(next.join("acme/media/upload.jpg")).unwrap(),
            b"user data"
        );
        assert!(!shared.join("acme/media/other.png").exists());
        assert_eq!(
            fs_err::read_to_string(next.join("local.py")).unwrap(),
            "DEBUG = True\n"
        );

        // Removing a release (pruning) leaves the shared content.
        fs_err::remove_dir_all(&release).unwrap();
        assert_eq!(
            fs_err::read(shared.join("acme/media/upload.jpg")).unwrap(),
            b"user data"
        );
    }

    #[test]
    fn what_is_created_belongs_to_the_site_user() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            return; // chown needs root; CI runs as root
        }
        let (_d, release, shared) = setup();
        let paths = vec!["acme/media".to_string(), "var/cache".to_string()];
        link(&release, &shared, &paths, Some((65534, 65534))).unwrap();
        for p in [
            "acme",
            "acme/media",
            "acme/media/uploads",
            "acme/media/uploads/logo.png",
            "var",
            "var/cache",
        ] {
            let m = fs_err::symlink_metadata(shared.join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (65534, 65534), "{p}");
        }
        // The release itself stays root's.
        let m = fs_err::symlink_metadata(release.join("acme")).unwrap();
        assert_eq!(m.uid(), 0);
    }

    #[test]
    fn paths_that_leave_the_release_are_refused() {
        let (_d, release, shared) = setup();
        for bad in ["../x", "/etc", "", "a/../../b"] {
            let err = link(&release, &shared, &[bad.to_string()], None).unwrap_err();
            assert!(err.contains("not a plain relative path"), "{bad}: {err}");
        }
        // A directory of the release replaced by a symlink is not followed.
        std::os::unix::fs::symlink("/etc", release.join("evil")).unwrap();
        let err = link(&release, &shared, &["evil/passwd".to_string()], None).unwrap_err();
        assert!(err.contains("is not a directory"), "{err}");
        assert!(!shared.join("evil").exists());
    }
}
