//! `sum-restore --media` and `--media-only` against real backups (a real
//! PostgreSQL, archives written by `sum-backup`): the media come back byte
//! for byte with the modes of media, a damaged or unsafe archive is refused
//! before anything is touched, and a failure half-way leaves the media
//! directory as it was.

use crate::backup::{site_with_data, text, Site};
use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::pg::Pg;
use common::Node;

fn restore(site: &Site, args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sum-restore"))
        .args(args)
        .env("SUM_ROOT", site.root.path())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

fn home(site: &Site) -> PathBuf {
    site.root.path().join("srv/sum/acme")
}

/// Uploads of several kinds: nested directories with a non-ASCII name,
/// files of three modes, a link inside and a link outside the directory.
fn fill_media(media: &Path) {
    let deep = media.join("original_images/2026/ünï");
    std::fs::create_dir_all(&deep).unwrap();
    let photo: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for (path, data, mode) in [
        (deep.join("photo.bin"), &photo[..], 0o644),
        (media.join("readme.txt"), b"hello".as_slice(), 0o600),
        (media.join("tool.sh"), b"#!/bin/sh\n".as_slice(), 0o755),
    ] {
        std::fs::write(&path, data).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::os::unix::fs::symlink("readme.txt", media.join("link.txt")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", media.join("outside")).unwrap();
}

/// Takes a backup with `sum-backup`; its dump's name.
fn backup(site: &Site) -> String {
    let out = site.run(&["acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    newest_dump(site)
}

fn newest_dump(site: &Site) -> String {
    let mut dumps: Vec<String> = site
        .files()
        .into_iter()
        .filter(|f| f.ends_with(".sql.gz"))
        .collect();
    dumps.sort();
    dumps.pop().unwrap()
}

fn archive_of(site: &Site, dump: &str) -> PathBuf {
    site.backups().join(sum::backup::media::media_name(dump))
}

/// A tree as a list a failed assertion can show: each path with its kind,
/// and for a file its mode, size and SHA-256 (so equal means byte for
/// byte), for a link its target.
fn tree(dir: &Path) -> Vec<(PathBuf, String)> {
    use sha2::Digest;
    common::snapshot(dir)
        .into_iter()
        .map(|(p, n)| {
            let what = match n {
                Node::Dir => "directory".to_string(),
                Node::Link(to) => format!("link to {}", to.display()),
                Node::File(data, mode) => {
                    let sha: String = sha2::Sha256::digest(&data)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    format!("file {mode:o} {} bytes sha256 {sha}", data.len())
                }
            };
            (p, what)
        })
        .collect()
}

/// What a restore makes of a tree: every file readable and writable by the
/// site's user and readable by the group.
fn as_restored(before: &[(PathBuf, String)]) -> Vec<(PathBuf, String)> {
    before
        .iter()
        .map(|(p, what)| {
            let restored = match what.strip_prefix("file ").and_then(|r| r.split_once(' ')) {
                Some((mode, rest)) => {
                    let mode = u32::from_str_radix(mode, 8).unwrap() | 0o640;
                    format!("file {mode:o} {rest}")
                }
                None => what.clone(),
            };
            (p.clone(), restored)
        })
        .collect()
}

/// Every directory of the tree, itself included, is 2750.
fn assert_media_dirs(media: &Path) {
    let mut dirs = vec![media.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let mode = std::fs::symlink_metadata(&d).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o2750, "{}", d.display());
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            }
        }
    }
}

/// The directories beside the media directory whose names start with
/// `media.<what>`.
fn beside(media: &Path, what: &str) -> Vec<PathBuf> {
    let prefix = format!("media.{what}");
    let mut found: Vec<PathBuf> = std::fs::read_dir(media.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .collect();
    found.sort();
    found
}

fn notes(pg: &Pg) -> String {
    pg.sql("acme", "SELECT count(*) FROM notes")
        .trim()
        .to_string()
}

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn a_restore_with_media_brings_back_the_database_and_every_file() {
    let Some(pg) = Pg::start() else { return };
    let site = site_with_data(&pg, "media = true");
    let media = home(&site).join("media");
    fill_media(&media);
    let before = tree(&media);
    let dump = backup(&site);
    let archive = archive_of(&site, &dump);

    // After the backup: rows deleted, an upload gone, one changed, one new.
    pg.sql("acme", "SET ROLE acme; DELETE FROM notes WHERE id > 5000;");
    std::fs::remove_file(media.join("original_images/2026/ünï/photo.bin")).unwrap();
    std::fs::write(media.join("readme.txt"), "changed").unwrap();
    std::fs::write(media.join("new-upload.txt"), "after the backup").unwrap();
    let changed = tree(&media);

    let out = restore(&site, &["acme", "latest", "--media"], &[]);
    assert_exit(&out, 2);
    assert_eq!(
        text(&out.stderr),
        "sum-restore replaces the contents of acme's database and its media directory with \
         the backup.\nA safety backup of the current database is taken first and the current\n\
         media are kept beside the restored ones, but the site is stopped while\nthe dump \
         loads. To go ahead, add --i-know-this-will-overwrite;\nto rehearse without touching \
         the live database, add --into SCRATCH_DB.\n"
    );
    let out = restore(
        &site,
        &["acme", "latest", "--media-only", "--into", "r"],
        &[],
    );
    assert_exit(&out, 2);
    assert_eq!(
        text(&out.stderr),
        "--media-only restores no database, so there is nothing to rehearse into r.\nTo \
         rehearse a restore with its media, use --into r --media: the dump is loaded\ninto r \
         and the media archive is checked completely, but not unpacked.\n"
    );

    // A rehearsal checks the archive and unpacks nothing.
    let args = ["acme", "latest", "--media", "--into", "rehearsal"];
    let out = restore(&site, &args, &pg.admin_env());
    assert_exit(&out, 0);
    let log = text(&out.stdout);
    let size = std::fs::metadata(&archive).unwrap().len();
    let verified = format!(
        "verified the media archive {} ({size} bytes, sha256 and 9 entries as its manifest \
         records; every entry read)",
        archive.display()
    );
    assert!(log.lines().any(|l| l == verified), "{log}");
    assert!(
        log.lines().any(|l| l
            == "--into: the media archive was checked but not unpacked; the media directory \
                was not touched"),
        "{log}"
    );
    assert_eq!(tree(&media), changed);
    assert_eq!(beside(&media, ""), Vec::<PathBuf>::new());

    let out = restore(
        &site,
        &["acme", "latest", "--media", "--i-know-this-will-overwrite"],
        &[],
    );
    assert_exit(&out, 0);
    let log = text(&out.stdout);
    let aside = beside(&media, "before-restore-");
    assert_eq!(aside.len(), 1, "{aside:?}");
    let aside = &aside[0];
    for line in [
        verified.clone(),
        format!(
            "the restored media are in {}; the media as they were are in {}",
            media.display(),
            aside.display()
        ),
        format!(
            "restored the media archive {} into {}",
            archive.display(),
            media.display()
        ),
        format!(
            "the media as they were before are in {a}; once the site is right, remove them \
             with `rm -rf {a}`",
            a = aside.display()
        ),
    ] {
        assert!(log.lines().any(|l| l == line), "no `{line}` in:\n{log}");
    }
    assert_eq!(tree(&media), as_restored(&before));
    assert_media_dirs(&media);
    assert_eq!(tree(aside), changed);
    assert_eq!(beside(&media, "restoring-"), Vec::<PathBuf>::new());
    assert_eq!(notes(&pg), "20000");
    assert!(!home(&site).join("maintenance").exists());

    // --media-only leaves the database alone and takes no safety backup;
    // `latest` passes over the safety backup, which has no media.
    let safety = newest_dump(&site);
    assert_ne!(safety, dump);
    pg.sql("acme", "SET ROLE acme; DELETE FROM notes WHERE id > 5000;");
    std::fs::remove_file(media.join("tool.sh")).unwrap();
    let files = site.files();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let args = [
        "acme",
        "latest",
        "--media-only",
        "--i-know-this-will-overwrite",
    ];
    let out = restore(&site, &args, &[]);
    assert_exit(&out, 0);
    let log = text(&out.stdout);
    let passed_over =
        format!("latest: {safety} has no media archive; the newest backup with one is {dump}");
    assert!(log.lines().any(|l| l == passed_over), "{log}");
    assert!(!log.contains("into database"), "{log}");
    assert_eq!(tree(&media), as_restored(&before));
    assert_eq!(notes(&pg), "5000");
    assert_eq!(site.files(), files, "a media-only restore wrote a backup");
    assert_eq!(beside(&media, "before-restore-").len(), 2);
}

/// The bytes of a media archive whose entries are written as given, with
/// none of the checks a tar writer makes: what an attacker or a damaged
/// disk could leave beside a dump.
enum Item<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Link(&'a str, &'a str),
    Device(&'a str),
}

fn craft(items: &[Item]) -> Vec<u8> {
    use flate2::{write::GzEncoder, Compression};
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for item in items {
        let (name, kind, data, link): (&str, _, &[u8], _) = match item {
            Item::File(n, d) => (n, tar::EntryType::Regular, d, None),
            Item::Dir(n) => (n, tar::EntryType::Directory, b"", None),
            Item::Link(n, to) => (n, tar::EntryType::Symlink, b"", Some(*to)),
            Item::Device(n) => (n, tar::EntryType::Char, b"", None),
        };
        let mut h = tar::Header::new_gnu();
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(to) = link {
            gnu.linkname[..to.len()].copy_from_slice(to.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// Puts `bytes` in place of the media archive of `dump`, with a manifest
/// that records them: only the entries themselves can be refused.
fn install(site: &Site, dump: &str, bytes: &[u8]) -> PathBuf {
    let archive = archive_of(site, dump);
    std::fs::write(&archive, bytes).unwrap();
    let info = sum::backup::media::verify(&archive).unwrap();
    let path = site.backups().join(format!("{dump}.json"));
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["media"]["size"] = info.size.into();
    m["media"]["sha256"] = info.sha256.into();
    m["media"]["entries"] = info.entries.into();
    std::fs::write(&path, m.to_string()).unwrap();
    archive
}

#[test]
fn a_damaged_media_archive_is_refused_before_anything_is_touched() {
    let Some(pg) = Pg::start() else { return };
    let site = site_with_data(&pg, "media = true");
    let media = home(&site).join("media");
    fill_media(&media);
    let dump = backup(&site);
    let archive = archive_of(&site, &dump);
    std::fs::write(media.join("new-upload.txt"), "after the backup").unwrap();
    pg.sql("acme", "SET ROLE acme; DELETE FROM notes WHERE id > 5000;");
    let live = tree(&media);
    let files = site.files();
    let good = std::fs::read(&archive).unwrap();
    let want = sum::backup::media::verify(&archive).unwrap();

    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    std::fs::write(&archive, &flipped).unwrap();
    let got = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(&flipped);
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let args = ["acme", &dump, "--media", "--i-know-this-will-overwrite"];
    let out = restore(&site, &args, &[]);
    assert_exit(&out, 1);
    assert_eq!(
        text(&out.stderr),
        format!(
            "sum-restore acme: refusing to restore the media: {} does not match its manifest: \
             sha256 {got}, but the manifest records {}; nothing was changed\n",
            archive.display(),
            want.sha256
        )
    );

    std::fs::write(&archive, &good[..good.len() - 100]).unwrap();
    let out = restore(&site, &args, &[]);
    assert_exit(&out, 1);
    assert_eq!(
        text(&out.stderr),
        format!(
            "sum-restore acme: refusing to restore the media: {} is {} bytes, but its manifest \
             records {}; nothing was changed\n",
            archive.display(),
            good.len() - 100,
            good.len()
        )
    );

    std::fs::remove_file(&archive).unwrap();
    let out = restore(&site, &args, &[]);
    assert_exit(&out, 1);
    assert_eq!(
        text(&out.stderr),
        format!(
            "sum-restore acme: refusing to restore the media: {} does not exist; nothing was \
             changed\n",
            archive.display()
        )
    );

    std::fs::write(&archive, &good).unwrap();
    assert_eq!(tree(&media), live);
    assert_eq!(beside(&media, ""), Vec::<PathBuf>::new());
    assert_eq!(site.files(), files, "a safety backup was taken");
    assert_eq!(notes(&pg), "5000", "the database was touched");
}

#[test]
fn archives_with_entries_that_would_land_outside_are_refused() {
    let Some(pg) = Pg::start() else { return };
    let site = site_with_data(&pg, "media = true");
    let media = home(&site).join("media");
    fill_media(&media);
    let dump = backup(&site);
    let live = tree(&media);
    let outside = site.root.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let abs = outside.join("absolute.txt").display().to_string();
    let link_to = outside.display().to_string();
    let refused = [
        (
            vec![
                Item::File("ok.txt", b"fine"),
                Item::File("../escape.txt", b"x"),
            ],
            "entry \"../escape.txt\" has a `..` component".to_string(),
        ),
        (
            vec![Item::File("a/../../escape.txt", b"x")],
            "entry \"a/../../escape.txt\" has a `..` component".to_string(),
        ),
        (
            vec![Item::File(&abs, b"x")],
            format!("entry {abs:?} is an absolute path"),
        ),
        (
            vec![
                Item::Link("uploads", &link_to),
                Item::File("uploads/planted.txt", b"x"),
            ],
            "entry \"uploads/planted.txt\" lies under the symbolic link \"uploads\" of the \
             archive; unpacking it would write where the link points"
                .to_string(),
        ),
        (
            vec![
                Item::File("uploads/planted.txt", b"x"),
                Item::Link("uploads", &link_to),
            ],
            "entry \"uploads/planted.txt\" lies under the symbolic link \"uploads\" of the \
             archive; unpacking it would write where the link points"
                .to_string(),
        ),
        (
            vec![Item::Dir("d"), Item::Device("d/null")],
            "entry \"d/null\" is a device file; uploaded media are files, directories and \
             symbolic links"
                .to_string(),
        ),
    ];
    let args = [
        "acme",
        &dump,
        "--media-only",
        "--i-know-this-will-overwrite",
    ];
    for (items, why) in refused {
        let archive = install(&site, &dump, &craft(&items));
        let out = restore(&site, &args, &[]);
        assert_exit(&out, 1);
        assert_eq!(
            text(&out.stderr),
            format!(
                "sum-restore acme: refusing to restore the media: {}: {why}; nothing was \
                 changed\n",
                archive.display()
            )
        );
        assert_eq!(tree(&media), live);
        assert_eq!(beside(&media, ""), Vec::<PathBuf>::new());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert!(!home(&site).join("escape.txt").exists());
    }

    // A link to anywhere is restored as a link, and nothing is written
    // where it points.
    let items = [
        Item::Dir("uploads"),
        Item::File("uploads/cake.jpg", b"cake"),
        Item::Link("elsewhere", &link_to),
    ];
    install(&site, &dump, &craft(&items));
    let out = restore(&site, &args, &[]);
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read_link(media.join("elsewhere")).unwrap(),
        outside
    );
    assert_eq!(
        std::fs::read(media.join("uploads/cake.jpg")).unwrap(),
        b"cake"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn a_failure_half_way_leaves_the_media_directory_as_it_was() {
    let Some(pg) = Pg::start() else { return };
    let site = site_with_data(&pg, "media = true");
    let media = home(&site).join("media");
    fill_media(&media);
    let dump = backup(&site);
    std::fs::write(media.join("new-upload.txt"), "after the backup").unwrap();
    let live = tree(&media);

    // A file in the way: the second entry cannot be unpacked below the
    // first, after some of the archive already was.
    let real = std::fs::read(archive_of(&site, &dump)).unwrap();
    let archive = install(
        &site,
        &dump,
        &craft(&[
            Item::File("first.txt", b"unpacked"),
            Item::File("photos", b"a file"),
            Item::File("photos/cake.jpg", b"cake"),
        ]),
    );
    let args = [
        "acme",
        &dump,
        "--media-only",
        "--i-know-this-will-overwrite",
    ];
    let out = restore(&site, &args, &[]);
    assert_exit(&out, 1);
    let err = text(&out.stderr);
    let staging = format!("{}.restoring-", media.display());
    assert!(
        err.starts_with(&format!(
            "sum-restore acme: unpacking {} into {staging}",
            archive.display()
        )) && err.contains("photos/cake.jpg")
            && err.ends_with(&format!(
                "; nothing was changed: the media directory {} is as it was\n",
                media.display()
            )),
        "{err}"
    );
    assert_eq!(tree(&media), live);
    assert_eq!(beside(&media, ""), Vec::<PathBuf>::new());

    // The dump fails to load after the media were unpacked: the database
    // rolls back and the unpacked media are removed.
    install(&site, &dump, &real);
    let bad = "acme-20240101T000000Z.sql.gz";
    let sh = format!(
        "gunzip -c {} | awk '{{print}} /^COPY public.notes/ && !done {{getline; print; print \
         \"\\\\.\"; print \"SELECT 1/0;\"; done=1}}' | gzip > {}",
        site.backups().join(&dump).display(),
        site.backups().join(bad).display()
    );
    assert!(Command::new("sh")
        .arg("-c")
        .arg(&sh)
        .status()
        .unwrap()
        .success());
    let check = sum::backup::dump::verify_file(&site.backups().join(bad)).unwrap();
    let path = site.backups().join(format!("{dump}.json"));
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["file"] = bad.into();
    m["size"] = check.size.into();
    m["sha256"] = check.sha256.into();
    std::fs::write(site.backups().join(format!("{bad}.json")), m.to_string()).unwrap();
    pg.sql("acme", "SET ROLE acme; DELETE FROM notes WHERE id > 5000;");
    let out = restore(
        &site,
        &["acme", bad, "--media", "--i-know-this-will-overwrite"],
        &[],
    );
    assert_exit(&out, 1);
    let err = text(&out.stderr);
    assert!(
        err.starts_with(
            "sum-restore acme: the load failed and was rolled back; the database is as it was: "
        ) && err.contains("division by zero")
            && err.ends_with(&format!(
                "; the media directory {} is as it was\n",
                media.display()
            )),
        "{err}"
    );
    assert!(
        text(&out.stdout).contains("unpacked the media archive into"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(tree(&media), live);
    assert_eq!(beside(&media, ""), Vec::<PathBuf>::new());
    assert_eq!(notes(&pg), "5000");
}

/// Records `release` as live with its media in `media_root`, as a deploy
/// does for a `[deploy] shared` MEDIA_ROOT.
fn go_live(site: &Site, release: &str, media_root: &Path) {
    let home = home(site);
    std::fs::create_dir_all(home.join("releases").join(release)).unwrap();
    std::os::unix::fs::symlink(format!("releases/{release}"), home.join("app")).unwrap();
    sum::site_state::save_release(
        &home.join("state"),
        &sum::site_state::ReleaseInfo {
            release: release.into(),
            git_ref: "main".into(),
            sha: "abc1234".repeat(5) + "ab",
            venv: "v".into(),
            created_utc: "2026-11-01T00:00:00Z".into(),
            status: sum::site_state::ReleaseStatus::Good,
            migrations: vec![],
            static_root: None,
            media_root: Some(media_root.display().to_string()),
            database: Some(crate::backup::recorded_database(site)),
        },
    )
    .unwrap();
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> Unmount {
    let ok = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0755"),
            "tmpfs",
        ])
        .arg(at)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount tmpfs at {}", at.display());
    Unmount(at.to_path_buf())
}

/// The media directory of the live release (a shared path, as the deploy
/// recorded it) fills its file system half-way through the unpack.
#[test]
fn a_full_disk_half_way_leaves_the_media_directory_as_it_was() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("note: mounting a small tmpfs needs root; skipping");
        return;
    }
    let Some(pg) = Pg::start() else { return };
    let site = site_with_data(&pg, "media = true");
    let shared = home(&site).join("shared/bakery");
    std::fs::create_dir_all(&shared).unwrap();
    let _tmpfs = mount_tmpfs(&shared, "1m");
    let media = shared.join("media");
    std::fs::create_dir(&media).unwrap();
    go_live(&site, "20261101T000000Z-abc1234", &media);
    let big: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(media.join("big.bin"), &big).unwrap();
    let dump = backup(&site);
    std::fs::remove_file(media.join("big.bin")).unwrap();
    std::fs::write(media.join("other.bin"), &big).unwrap();
    let live = tree(&media);

    let args = [
        "acme",
        &dump,
        "--media-only",
        "--i-know-this-will-overwrite",
    ];
    let out = restore(&site, &args, &[]);
    assert_exit(&out, 1);
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "sum-restore acme: unpacking {} into {}.restoring-",
            archive_of(&site, &dump).display(),
            media.display()
        )) && err.contains("No space left on device")
            && err.ends_with(&format!(
                "; nothing was changed: the media directory {} is as it was\n",
                media.display()
            )),
        "{err}"
    );
    assert_eq!(tree(&media), live);
    assert_eq!(beside(&media, ""), Vec::<PathBuf>::new());

    // A media directory that is a mount point cannot be renamed: refused
    // before anything is unpacked.
    let _inner = mount_tmpfs(&media, "1m");
    let out = restore(&site, &args, &[]);
    assert_exit(&out, 1);
    assert_eq!(
        text(&out.stderr),
        format!(
            "sum-restore acme: {m} is a mount point: the restore unpacks beside it and renames, \
             which cannot move a mount point; mount the file system one level up instead; \
             nothing was changed: the media directory {m} is as it was\n",
            m = media.display()
        )
    );
    assert_eq!(beside(&media, ""), Vec::<PathBuf>::new());
}
