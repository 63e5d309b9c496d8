//! Where a release's static and media files really go (SPEC §7 step 4).
//!
//! Real apps often hard-code `STATIC_ROOT = <project>/collect_static` and
//! `MEDIA_ROOT = <project>/media` instead of reading the `STATIC_ROOT` and
//! `MEDIA_ROOT` the units export. The import step asks Django for the
//! effective values; [`place`] makes them work in a release that root owns
//! and that the next deploy replaces:
//!
//! - a `STATIC_ROOT` inside the release is created for the site's user, so
//!   `collectstatic` (run as that user) can fill it. Each release then has
//!   its own static files, and a rollback serves the old release's.
//! - a `MEDIA_ROOT` inside the release becomes a symlink to the site's
//!   persistent `media/`, seeded from the release's own media the first
//!   time (while `media/` is empty), so uploads outlive every release.
//!
//! What is recorded with the release is where the files really are: the
//! in-release static directory, and `media/` for linked media. Caddy
//! serves those; backups archive that media directory.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::app::Effective;
use super::shared::{copy_tree, give};
use crate::site_state::{servable, Served};
use crate::system::fsutil::walk;

/// Where the release's static and media files are, and what was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub static_root: String,
    pub media_root: String,
    /// Lines for the deploy log: what was created or linked, and warnings.
    pub notes: Vec<String>,
}

/// Prepares the effective paths of `release` (not live yet).
/// `home` is the site's directory and `media` its persistent media
/// directory, both as real paths; `owner` is the site user's (uid, gid),
/// None under a test root.
pub fn place(
    release: &Path,
    home: &Path,
    media: &Path,
    eff: &Effective,
    owner: Option<(u32, u32)>,
) -> Result<Placed, String> {
    let release = release
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", release.display()))?;
    let at = Places {
        given_home: home,
        home: home.canonicalize().unwrap_or_else(|_| home.to_path_buf()),
        media,
        media_dir: media.canonicalize().unwrap_or_else(|_| media.to_path_buf()),
        owner,
        release,
    };
    let mut notes = Vec::new();
    let static_real = resolve(&eff.static_root, &at.release, "STATIC_ROOT")?;
    let media_real = resolve(&eff.media_root, &at.release, "MEDIA_ROOT")?;
    let static_root = match &static_real {
        None => String::new(),
        Some(p) => at.place_static(p, media_real.as_deref(), &mut notes)?,
    };
    let media_root = match &media_real {
        None => String::new(),
        Some(p) => at.place_media(p, &mut notes)?,
    };
    Ok(Placed {
        static_root,
        media_root,
        notes,
    })
}

/// The real paths [`place`] works with.
struct Places<'a> {
    release: PathBuf,
    /// The site's directory as the caller named it, and its real path.
    given_home: &'a Path,
    home: PathBuf,
    /// The persistent media directory as given, and its real path.
    media: &'a Path,
    media_dir: PathBuf,
    owner: Option<(u32, u32)>,
}

impl Places<'_> {
    /// `p` as recorded: under the home's own name, so a /srv that is a
    /// symlink still gives paths inside /srv/sum/<site>/.
    fn record(&self, p: &Path) -> String {
        match p.strip_prefix(&self.home) {
            Ok(rest) => self.given_home.join(rest).display().to_string(),
            Err(_) => p.display().to_string(),
        }
    }

    fn in_release(&self, p: &Path) -> Option<PathBuf> {
        p.strip_prefix(&self.release).ok().map(Path::to_path_buf)
    }

    /// The effective STATIC_ROOT `p` (a real path): created for
    /// collectstatic when it lies inside the release; what is recorded.
    fn place_static(
        &self,
        p: &Path,
        media_real: Option<&Path>,
        notes: &mut Vec<String>,
    ) -> Result<String, String> {
        if let Some(rel) = self.in_release(p) {
            if rel.as_os_str().is_empty() {
                return Err(format!(
                    "STATIC_ROOT is the release directory itself ({}); collectstatic would \
                     write over the code: point it at a directory of its own, such as \
                     BASE_DIR / \"collect_static\"",
                    p.display()
                ));
            }
            if let Some(m) = media_real {
                if p.starts_with(m) {
                    return Err(format!(
                        "STATIC_ROOT {} lies inside MEDIA_ROOT {}: give them separate \
                         directories",
                        p.display(),
                        m.display()
                    ));
                }
            }
            make_writable(&self.release, &rel, self.owner)?;
            notes.push(format!(
                "STATIC_ROOT {} lies inside the release: created for collectstatic; each \
                 release keeps its own static files, and a rollback serves its own",
                rel.display()
            ));
        } else if !servable(&self.home, p, Served::Static) {
            notes.push(format!(
                "warning: STATIC_ROOT {} is not where Caddy serves /static/ from (the \
                 site's static/, a [deploy] shared path or a directory inside the \
                 release), so it serves static/, which collectstatic does not fill; use \
                 the STATIC_ROOT environment variable the units set",
                p.display()
            ));
        }
        Ok(self.record(p))
    }

    /// The effective MEDIA_ROOT `p` (a real path): linked to `media/` when
    /// it lies inside the release; what is recorded.
    fn place_media(&self, p: &Path, notes: &mut Vec<String>) -> Result<String, String> {
        if let Some(rel) = self.in_release(p) {
            if rel.as_os_str().is_empty() {
                return Err(format!(
                    "MEDIA_ROOT is the release directory itself ({}); uploads would land \
                     among the code: point it at a directory of its own, such as \
                     BASE_DIR / \"media\"",
                    p.display()
                ));
            }
            notes.extend(link_media(&self.release, &rel, self.media, self.owner)?);
            return Ok(self.media.display().to_string());
        }
        if !servable(&self.home, p, Served::Media) {
            notes.push(format!(
                "warning: MEDIA_ROOT {} is not where Caddy serves /media/ from or \
                 backups archive (the site's media/ or a [deploy] shared path), and \
                 the app's units may not write there; use the MEDIA_ROOT environment \
                 variable the units set",
                p.display()
            ));
        } else if !p.starts_with(&self.media_dir) && p.is_dir() {
            // Servable and not media/: a [deploy] shared path, made
            // readable by Caddy like media/.
            if let Some((uid, _)) = self.owner {
                super::dirs::open_to_caddy(p, uid).map_err(|e| e.to_string())?;
            }
        }
        Ok(self.record(p))
    }
}

/// Django's value as a real path: relative values are relative to the
/// release (the working directory of every app process), symlinks in the
/// part that exists are resolved, and `..` in the rest is refused.
fn resolve(value: &str, release: &Path, name: &str) -> Result<Option<PathBuf>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    let path = release.join(value);
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    while fs_err::symlink_metadata(existing).is_err() {
        let Some(parent) = existing.parent() else {
            break;
        };
        if let Some(name) = existing.file_name() {
            rest.push(name.to_os_string());
        }
        existing = parent;
    }
    if path
        .components()
        .rev()
        .take(rest.len())
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(format!("{name} {value:?} is not a plain path"));
    }
    let mut real = existing
        .canonicalize()
        .map_err(|e| format!("cannot resolve {name} {value:?}: {e}"))?;
    for c in rest.iter().rev() {
        real.push(c);
    }
    Ok(Some(real))
}

/// Creates `release/rel` (and missing parents, root's) for the site's user.
/// A directory the release already has is given to the user with its
/// content, so collectstatic may replace what was committed.
fn make_writable(release: &Path, rel: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
    let dir = release.join(rel);
    match fs_err::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => give_tree(&dir, owner).map_err(|e| e.to_string()),
        Ok(_) => Err(format!(
            "STATIC_ROOT {} is a file in the release, not a directory",
            rel.display()
        )),
        Err(_) => {
            if let Some(parent) = dir.parent() {
                fs_err::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            fs_err::create_dir(&dir).map_err(|e| e.to_string())?;
            fs_err::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
            give(&dir, owner)
        }
    }
}

/// chmod g+s on every directory of a tree.
fn set_group_id_on_dirs(path: &Path) -> std::io::Result<()> {
    walk(path, &mut |p, m| {
        if !m.is_dir() {
            return Ok(());
        }
        let mode = m.permissions().mode() | 0o2000;
        fs_err::set_permissions(p, std::fs::Permissions::from_mode(mode))
    })
}

fn give_tree(path: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    if owner.is_none() {
        return Ok(());
    }
    walk(path, &mut |p, _| {
        give(p, owner).map_err(std::io::Error::other)
    })
}

/// Replaces `release/rel` with a symlink to `media`, seeding `media` from
/// it while `media` is empty. Returns the log lines.
fn link_media(
    release: &Path,
    rel: &Path,
    media: &Path,
    owner: Option<(u32, u32)>,
) -> Result<Vec<String>, String> {
    let inside = release.join(rel);
    let mut notes = Vec::new();
    let empty = match fs_err::read_dir(media) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => return Err(format!("the site's media directory: {e}")),
    };
    match fs_err::symlink_metadata(&inside) {
        Ok(m) if m.is_dir() => {
            let entries: Vec<_> = fs_err::read_dir(&inside)
                .and_then(|d| d.collect::<Result<Vec<_>, _>>())
                .map_err(|e| e.to_string())?;
            let n = entries.len();
            let plural = if n == 1 { "y" } else { "ies" };
            if n > 0 && empty {
                // Seeded files take media/'s group (caddy's on a real
                // system) and its directories the set-group-ID bit, like
                // everything the app creates there later.
                let group = fs_err::metadata(media).map(|m| m.gid()).ok();
                let seed_owner = owner.map(|(uid, gid)| (uid, group.unwrap_or(gid)));
                for entry in &entries {
                    let to = media.join(entry.file_name());
                    copy_tree(&entry.path(), &to, seed_owner)
                        .and_then(|()| match seed_owner {
                            Some(_) => set_group_id_on_dirs(&to),
                            None => Ok(()),
                        })
                        .map_err(|e| {
                            format!("seeding {} from the release: {e}", media.display())
                        })?;
                }
                notes.push(format!(
                    "media/ was empty: seeded with the {n} entr{plural} of the release's {}",
                    rel.display()
                ));
            } else if n > 0 {
                notes.push(format!(
                    "the release's own {} ({n} entr{plural}) is not copied: media/ already has \
                     files",
                    rel.display(),
                ));
            }
            fs_err::remove_dir_all(&inside).map_err(|e| e.to_string())?;
        }
        Ok(_) => {
            return Err(format!(
                "MEDIA_ROOT {} is a file in the release, not a directory",
                rel.display()
            ))
        }
        Err(_) => {
            if let Some(parent) = inside.parent() {
                fs_err::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
        }
    }
    fs_err::os::unix::fs::symlink(media, &inside).map_err(|e| e.to_string())?;
    notes.insert(
        0,
        format!(
            "MEDIA_ROOT {} lies inside the release: linked to {}, so uploads outlive every \
             release and rollback",
            rel.display(),
            media.display()
        ),
    );
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Site {
        _d: tempfile::TempDir,
        home: PathBuf,
        media: PathBuf,
    }

    fn site() -> Site {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().canonicalize().unwrap().join("srv/sum/bakery");
        let media = home.join("media");
        fs_err::create_dir_all(&media).unwrap();
        fs_err::create_dir_all(home.join("static")).unwrap();
        Site { _d: d, home, media }
    }

    /// A release shaped like bakerydemo: committed media, no collect_static.
    fn release(s: &Site, name: &str) -> PathBuf {
        let r = s.home.join("releases").join(name);
        fs_err::create_dir_all(r.join("media/original_images")).unwrap();
        fs_err::write(r.join("media/original_images/welcome.txt"), name).unwrap();
        fs_err::create_dir_all(r.join("bakery")).unwrap();
        r
    }

    fn noted(p: &Placed, needle: &str) -> bool {
        p.notes.iter().any(|n| n.contains(needle))
    }

    fn hard_coded(r: &Path) -> Effective {
        Effective {
            static_root: r.join("collect_static").display().to_string(),
            media_root: r.join("media").display().to_string(),
        }
    }

    #[test]
    fn in_release_paths_get_static_per_release_and_media_linked() {
        let s = site();
        let r1 = release(&s, "r1");
        let p1 = place(&r1, &s.home, &s.media, &hard_coded(&r1), None).unwrap();
        assert_eq!(
            p1.static_root,
            r1.join("collect_static").display().to_string()
        );
        assert!(r1.join("collect_static").is_dir());
        assert_eq!(p1.media_root, s.media.display().to_string());
        assert_eq!(fs_err::read_link(r1.join("media")).unwrap(), s.media);
        // First use: media/ was empty, so the release's own media seeded it.
        assert_eq!(
            fs_err::read_to_string(s.media.join("original_images/welcome.txt")).unwrap(),
            "r1"
        );
        assert!(
            noted(&p1, "MEDIA_ROOT media lies inside the release: linked to"),
            "{:?}",
            p1.notes
        );
        assert!(noted(&p1, "seeded with the 1 entry"), "{:?}", p1.notes);
        assert!(noted(&p1, "STATIC_ROOT collect_static"), "{:?}", p1.notes);

        // An upload through r1, then r2: the upload stays, nothing is
        // overwritten by r2's own media.
        fs_err::write(r1.join("media/original_images/upload.jpg"), b"jpg").unwrap();
        let r2 = release(&s, "r2");
        let p2 = place(&r2, &s.home, &s.media, &hard_coded(&r2), None).unwrap();
        assert_eq!(
            p2.static_root,
            r2.join("collect_static").display().to_string()
        );
        assert_ne!(p1.static_root, p2.static_root);
        assert_eq!(
            fs_err::read(r2.join("media/original_images/upload.jpg")).unwrap(),
            b"jpg"
        );
        assert_eq!(
            fs_err::read_to_string(s.media.join("original_images/welcome.txt")).unwrap(),
            "r1"
        );
        assert!(
            noted(&p2, "is not copied: media/ already has files"),
            "{:?}",
            p2.notes
        );
        // Removing a release (pruning) removes the link, not the media.
        fs_err::remove_dir_all(&r1).unwrap();
        assert!(s.media.join("original_images/upload.jpg").is_file());
    }

    #[test]
    fn paths_from_the_environment_are_recorded_as_they_are() {
        let s = site();
        let r = release(&s, "r1");
        let eff = Effective {
            static_root: s.home.join("static").display().to_string(),
            media_root: s.media.display().to_string(),
        };
        let p = place(&r, &s.home, &s.media, &eff, None).unwrap();
        assert_eq!(p.static_root, eff.static_root);
        assert_eq!(p.media_root, eff.media_root);
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        // The release's media directory is left alone: the app does not use it.
        assert!(r.join("media").is_dir());
        assert!(!r.join("media").is_symlink());
    }

    /// `[deploy] shared = ["media"]` ran first (the release step): the
    /// effective MEDIA_ROOT resolves into shared/, which is used as it is.
    #[test]
    fn media_in_a_shared_path_is_recorded_there_and_not_linked_again() {
        let s = site();
        let r = release(&s, "r1");
        let shared = s.home.join("shared/media");
        fs_err::create_dir_all(shared.join("original_images")).unwrap();
        fs_err::remove_dir_all(r.join("media")).unwrap();
        std::os::unix::fs::symlink(&shared, r.join("media")).unwrap();
        let p = place(&r, &s.home, &s.media, &hard_coded(&r), None).unwrap();
        assert_eq!(p.media_root, shared.display().to_string());
        assert_eq!(fs_err::read_link(r.join("media")).unwrap(), shared);
        assert!(!noted(&p, "MEDIA_ROOT"), "{:?}", p.notes);
        assert_eq!(fs_err::read_dir(&s.media).unwrap().count(), 0);
    }

    /// What docs/deploy.md says: media in a shared path is opened to Caddy
    /// like media/ (the caddy group, 2750).
    #[test]
    fn media_in_a_shared_path_is_given_to_the_caddy_group() {
        use std::os::unix::fs::MetadataExt;
        let Some(caddy) = crate::deploy::dirs::caddy_gid() else {
            eprintln!("skipped: no caddy group on this machine");
            return;
        };
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root to give files away");
            return;
        }
        let s = site();
        let r = release(&s, "r1");
        let shared = s.home.join("shared/media");
        fs_err::create_dir_all(&shared).unwrap();
        fs_err::remove_dir_all(r.join("media")).unwrap();
        std::os::unix::fs::symlink(&shared, r.join("media")).unwrap();
        place(&r, &s.home, &s.media, &hard_coded(&r), Some((4321, 4322))).unwrap();
        let m = fs_err::metadata(&shared).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (4321, caddy, 0o2750));
        // media/ itself is the bootstrap's to set up, not place()'s.
        let m = fs_err::metadata(&s.media).unwrap();
        assert_eq!(m.mode() & 0o2000, 0);
    }

    #[test]
    fn relative_unset_and_outside_values() {
        let s = site();
        let r = release(&s, "r1");
        // Relative to the release (the app's working directory); unset media.
        let eff = Effective {
            static_root: "build/static".into(),
            media_root: String::new(),
        };
        let p = place(&r, &s.home, &s.media, &eff, None).unwrap();
        assert_eq!(p.static_root, r.join("build/static").display().to_string());
        assert!(r.join("build/static").is_dir());
        assert_eq!(p.media_root, "");
        // Outside the site's home: recorded, with a warning naming the fix.
        let eff = Effective {
            static_root: "/var/www/static".into(),
            media_root: "/var/www/media".into(),
        };
        let p = place(&r, &s.home, &s.media, &eff, None).unwrap();
        assert_eq!(p.media_root, "/var/www/media");
        assert!(p
            .notes
            .iter()
            .any(|n| n.starts_with("warning: STATIC_ROOT /var/www/static")));
        assert!(p
            .notes
            .iter()
            .any(|n| n.starts_with("warning: MEDIA_ROOT /var/www/media")
                && n.contains("the MEDIA_ROOT environment variable")));
        // Inside the home but not a place Caddy serves: the git mirror.
        let eff = Effective {
            static_root: s.home.join("repo.git").display().to_string(),
            media_root: s.home.join("state").display().to_string(),
        };
        let p = place(&r, &s.home, &s.media, &eff, None).unwrap();
        assert_eq!(p.notes.len(), 2, "{:?}", p.notes);
        assert!(p.notes[0].contains("is not where Caddy serves /static/ from"));
        assert!(p.notes[1].contains("is not where Caddy serves /media/ from"));
    }

    #[test]
    fn a_home_reached_through_a_symlink_is_recorded_under_its_own_name() {
        let s = site();
        let r = release(&s, "r1");
        let link = s.home.parent().unwrap().join("bakery-link");
        std::os::unix::fs::symlink(&s.home, &link).unwrap();
        let r_link = link.join("releases/r1");
        let p = place(
            &r_link,
            &link,
            &link.join("media"),
            &hard_coded(&r_link),
            None,
        )
        .unwrap();
        assert_eq!(
            p.static_root,
            link.join("releases/r1/collect_static")
                .display()
                .to_string()
        );
        assert_eq!(p.media_root, link.join("media").display().to_string());
        assert!(r.join("collect_static").is_dir());
    }

    #[test]
    fn refusals_name_the_setting() {
        let s = site();
        let r = release(&s, "r1");
        let cases = [
            (
                r.display().to_string(),
                String::new(),
                "STATIC_ROOT is the release directory itself",
            ),
            (
                String::new(),
                r.display().to_string(),
                "MEDIA_ROOT is the release directory itself",
            ),
            (
                r.join("media/static").display().to_string(),
                r.join("media").display().to_string(),
                "lies inside MEDIA_ROOT",
            ),
            (
                "x/../../y".into(),
                String::new(),
                "STATIC_ROOT \"x/../../y\" is not a plain path",
            ),
        ];
        for (st, me, want) in cases {
            let eff = Effective {
                static_root: st,
                media_root: me,
            };
            let e = place(&r, &s.home, &s.media, &eff, None).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        // A file where MEDIA_ROOT should be a directory.
        fs_err::write(r.join("uploads"), b"").unwrap();
        let eff = Effective {
            static_root: String::new(),
            media_root: r.join("uploads").display().to_string(),
        };
        let e = place(&r, &s.home, &s.media, &eff, None).unwrap_err();
        assert!(
            e.contains("MEDIA_ROOT uploads is a file in the release"),
            "{e}"
        );
        // Nothing was seeded or linked by the refused attempts.
        assert_eq!(fs_err::read_dir(&s.media).unwrap().count(), 0);
        assert!(r.join("media").is_dir() && !r.join("media").is_symlink());
    }

    #[test]
    fn what_is_created_belongs_to_the_site_user() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root to give files away");
            return;
        }
        let s = site();
        let r = release(&s, "r1");
        fs_err::create_dir_all(r.join("collect_static/css")).unwrap();
        fs_err::write(r.join("collect_static/css/old.css"), b"").unwrap();
        // media/ as the bootstrap leaves it: the caddy group, 2750.
        std::os::unix::fs::chown(&s.media, Some(4321), Some(4323)).unwrap();
        place(&r, &s.home, &s.media, &hard_coded(&r), Some((4321, 4322))).unwrap();
        for p in [
            r.join("collect_static"),
            r.join("collect_static/css/old.css"),
        ] {
            let m = fs_err::symlink_metadata(&p).unwrap();
            assert_eq!((m.uid(), m.gid()), (4321, 4322), "{}", p.display());
        }
        // Seeded media take media/'s group; directories pass it on (g+s).
        for p in [
            s.media.join("original_images"),
            s.media.join("original_images/welcome.txt"),
        ] {
            let m = fs_err::symlink_metadata(&p).unwrap();
            assert_eq!((m.uid(), m.gid()), (4321, 4323), "{}", p.display());
        }
        let m = fs_err::metadata(s.media.join("original_images")).unwrap();
        assert_eq!(m.mode() & 0o2000, 0o2000);
        // The release itself stays root's.
        assert_eq!(fs_err::metadata(&r).unwrap().uid(), 0);
    }
}
