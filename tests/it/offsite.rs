//! Off-host copies with the real rclone: a `local` remote standing in for
//! the storage, and a `crypt` remote over it. A real PostgreSQL and the
//! real `sum-backup`. The storage servers (SFTP, S3) are the end-to-end
//! test's.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::backup::{site_with_data, text, Site};
use crate::common::pg::Pg;

/// The storage directory of a test, and the rclone configuration naming
/// it `store` (and `vault`, encrypted over `store:<storage>/enc`).
struct Storage {
    dir: tempfile::TempDir,
}

impl Storage {
    fn new() -> Option<Storage> {
        if !crate::common::require_tool("rclone") {
            return None;
        }
        Some(Storage {
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Writes `/etc/sum/rclone.conf` of `site` with the given remotes.
    fn configure(&self, site: &Site, remotes: &[&str]) {
        let obscured = Command::new("rclone")
            .args(["obscure", "tests-only-crypt-password"])
            .output()
            .unwrap();
        let pw = text(&obscured.stdout).trim().to_string();
        let mut conf = String::new();
        for r in remotes {
            match *r {
                "store" => conf.push_str("[store]\ntype = local\n\n"),
                "vault" => conf.push_str(&format!(
                    "[vault]\ntype = crypt\nremote = store:{}/enc\npassword = {pw}\n\n",
                    self.path().display()
                )),
                // An SFTP server that is not there: a remote that is
                // defined but does not answer.
                "gone" => conf.push_str(&format!(
                    "[gone]\ntype = sftp\nhost = 127.0.0.1\nport = 1\nuser = x\npass = {pw}\n\n"
                )),
                other => panic!("no remote {other}"),
            }
        }
        let path = site.root.path().join("etc/sum/rclone.conf");
        std::fs::write(&path, conf).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Files under the storage's `rel` directory, sorted.
    fn files(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path().join(rel))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn dumps(files: &[String]) -> Vec<String> {
    files
        .iter()
        .filter(|f| f.ends_with(".sql.gz"))
        .cloned()
        .collect()
}

fn record(site: &Site) -> serde_json::Value {
    let path = site.root.path().join("srv/sum/acme/state/offsite.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Runs sum-backup; its exit status and what it printed.
fn backup(site: &Site) -> (Option<i32>, String) {
    let out = site.run(&["acme"]);
    (
        out.status.code(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

/// `sumctl backups acme`'s output.
fn sumctl_backups(site: &Site) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sumctl"))
        .args(["backups", "acme"])
        .env("SUM_ROOT", site.root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// Names have one-second resolution: the next backup gets another.
fn next_second() {
    std::thread::sleep(std::time::Duration::from_millis(1100));
}

#[test]
fn each_verified_backup_is_copied_checked_and_recorded_off_host() {
    let (Some(pg), Some(storage)) = (Pg::start(), Storage::new()) else {
        return;
    };
    let site = site_with_data(
        &pg,
        &format!("offsite = \"store:{}/backups\"", storage.path().display()),
    );
    storage.configure(&site, &["store"]);
    let metrics = site.root.path().join("var/lib/prometheus/node-exporter");
    std::fs::create_dir_all(&metrics).unwrap();
    let (code, out) = backup(&site);
    assert_eq!(code, Some(0), "{out}");
    let local = dumps(&site.files());
    assert_eq!(local.len(), 1, "{out}");
    let first = &local[0];
    // The off-host copy's figures, beside the backup's.
    let file = metrics.join("sum-acme-backup.prom");
    let m = std::fs::read_to_string(&file).unwrap();
    let taken = sum::backup::catalog::parse_backup_name("acme", first).unwrap();
    for line in [
        "sum_backup_offsite_last_success{site=\"acme\"} 1\n".to_string(),
        "sum_backup_offsite_verified_backups{site=\"acme\"} 1\n".to_string(),
        format!("sum_backup_offsite_newest_verified_timestamp_seconds{{site=\"acme\"}} {taken}\n"),
    ] {
        assert!(m.contains(&line), "{line} is not in:\n{m}");
    }
    assert!(
        m.contains("sum_backup_offsite_last_duration_seconds{site=\"acme\"} "),
        "{m}"
    );
    assert!(
        m.contains("sum_backup_offsite_last_verified_timestamp_seconds{site=\"acme\"} "),
        "{m}"
    );
    crate::common::promtool_check_metrics(&file);
    let target = format!("store:{}/backups/acme", storage.path().display());
    assert!(
        out.contains(&format!("off-host: copied 2 file(s) to {target}"))
            && out.contains(&format!("off-host: verified {first} on {target} (hash)")),
        "{out}"
    );
    let remote = storage.files("backups/acme");
    assert_eq!(remote, vec![first.clone(), format!("{first}.json")]);
    let same = std::fs::read(site.backups().join(first)).unwrap()
        == std::fs::read(storage.path().join("backups/acme").join(first)).unwrap();
    assert!(same, "the remote copy differs");
    let rec = record(&site);
    assert_eq!(rec["target"], target.as_str());
    assert_eq!(rec["copies"][first.as_str()]["check"], "hash", "{rec}");
    let listing = sumctl_backups(&site);
    assert!(
        listing.contains(&format!(
            "OFF-HOST {target} (as the last runs recorded it):"
        )) && listing.contains(first.as_str())
            && listing.contains("verified (hash) ")
            && listing.contains("here and off-host"),
        "{listing}"
    );
    let json = Command::new(env!("CARGO_BIN_EXE_sumctl"))
        .args(["backups", "acme", "--json"])
        .env("SUM_ROOT", site.root.path())
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json[0]["file"], first.as_str(), "{json}");
    assert_eq!(json[0]["offsite"]["target"], target.as_str(), "{json}");
    assert_eq!(json[0]["offsite"]["check"], "hash", "{json}");
    assert_eq!(
        json[0]["offsite"]["verified_utc"],
        rec["copies"][first.as_str()]["verified_utc"],
        "{json}"
    );

    // The next run copies only the new backup; the same day's older one
    // then goes by the daily rule, locally and off-host alike.
    next_second();
    let (code, out) = backup(&site);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("off-host: copied 2 file(s)"), "{out}");
    assert!(!out.contains(&format!("verified {first}")), "{out}");
    assert!(
        out.contains(&format!(
            "off-host: retention deleted {first} from {target}"
        )),
        "{out}"
    );
    let local = dumps(&site.files());
    assert_eq!(dumps(&storage.files("backups/acme")), local);
    assert_eq!(record(&site)["copies"].as_object().unwrap().len(), 1);
}

#[test]
fn a_run_without_its_remote_fails_keeps_the_local_backup_and_the_next_fills_the_hole() {
    let (Some(pg), Some(storage)) = (Pg::start(), Storage::new()) else {
        return;
    };
    let site = site_with_data(
        &pg,
        &format!("offsite = \"store:{}/backups\"", storage.path().display()),
    );
    // No configuration at all.
    let (code, out) = backup(&site);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the off-host copy to store:")
            && out.contains("the local backup is verified and kept")
            && out.contains("etc/sum/rclone.conf does not exist: define the remote `store` there"),
        "{out}"
    );
    let listed = text(&site.run(&["acme", "--list"]).stdout);
    assert!(listed.contains("verified"), "{listed}");
    // A configuration without the remote: told apart from a missing file.
    storage.configure(&site, &["vault"]);
    next_second();
    let (code, out) = backup(&site);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the remote `store` is not defined in") && out.contains("(it defines: vault)"),
        "{out}"
    );
    assert_eq!(storage.files("backups/acme"), Vec::<String>::new());
    // The remote is back: `--offsite-only` copies the backup it missed
    // without taking one; then the night's run copies its own.
    let missed = dumps(&site.files());
    assert_eq!(missed.len(), 1, "the same day's backups keep the newest");
    storage.configure(&site, &["store"]);
    let out = site.run(&["acme", "--offsite-only"]);
    let text_out = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text_out}{}",
        text(&out.stderr)
    );
    assert!(
        text_out.contains(&format!("off-host: verified {}", missed[0])),
        "{text_out}"
    );
    assert_eq!(
        dumps(&site.files()),
        missed,
        "--offsite-only takes no backup"
    );
    next_second();
    let (code, out) = backup(&site);
    assert_eq!(code, Some(0), "{out}");
    let local = dumps(&site.files());
    assert!(
        out.contains(&format!("off-host: verified {}", local[0])),
        "{out}"
    );
    assert_eq!(dumps(&storage.files("backups/acme")), local, "{out}");
}

#[test]
fn offsite_only_needs_an_offsite_remote() {
    let Some(pg) = Pg::start() else {
        return;
    };
    let site = site_with_data(&pg, "");
    let out = site.run(&["acme", "--offsite-only"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--offsite-only: site acme has no [backup] offsite in"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(site.files(), Vec::<String>::new());
}

#[test]
fn a_remote_that_refuses_writes_records_nothing_and_loses_nothing() {
    let (Some(pg), Some(storage)) = (Pg::start(), Storage::new()) else {
        return;
    };
    // The target's parent is a regular file: every write fails, even as root.
    std::fs::write(storage.path().join("blocked"), "not a directory").unwrap();
    let site = site_with_data(
        &pg,
        &format!("offsite = \"store:{}/blocked/x\"", storage.path().display()),
    );
    storage.configure(&site, &["store"]);
    let (code, out) = backup(&site);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("rclone copy failed"), "{out}");
    assert_eq!(dumps(&site.files()).len(), 1, "the local backup stays");
    let rec = record(&site);
    assert!(rec["copies"].as_object().unwrap().is_empty(), "{rec}");
}

#[test]
fn a_crypt_remote_hides_names_and_contents_and_is_checked_with_cryptcheck() {
    let (Some(pg), Some(storage)) = (Pg::start(), Storage::new()) else {
        return;
    };
    let site = site_with_data(&pg, "offsite = \"vault:backups\"");
    storage.configure(&site, &["store", "vault"]);
    let (code, out) = backup(&site);
    assert_eq!(code, Some(0), "{out}");
    let dump = dumps(&site.files()).remove(0);
    assert!(
        out.contains(&format!(
            "off-host: verified {dump} on vault:backups/acme (cryptcheck)"
        )),
        "{out}"
    );
    // What the storage holds: no name of ours, no byte of the dump.
    let mut stored = Vec::new();
    let mut stack = vec![storage.path().join("enc")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                stored.push(p);
            }
        }
    }
    assert_eq!(stored.len(), 2, "{stored:?}");
    let plain = std::fs::read(site.backups().join(&dump)).unwrap();
    for p in &stored {
        let name = p.to_string_lossy();
        assert!(
            !name.contains("acme-") && !name.contains(".sql.gz"),
            "{name}"
        );
        let bytes = std::fs::read(p).unwrap();
        assert!(!bytes.windows(64).any(|w| w == &plain[..64]), "{name}");
    }
}

/// A site with data that keeps one daily backup and copies to
/// `store:<storage>/b`.
fn keeping_one_day(pg: &Pg, storage: &Storage) -> Site {
    let site = site_with_data(
        pg,
        &format!(
            "keep_daily = 1\nkeep_weekly = 0\nkeep_monthly = 0\noffsite = \"store:{}/b\"",
            storage.path().display()
        ),
    );
    storage.configure(&site, &["store"]);
    site
}

#[test]
fn remote_retention_keeps_what_the_rules_keep_and_never_touches_foreign_files() {
    let (Some(pg), Some(storage)) = (Pg::start(), Storage::new()) else {
        return;
    };
    let site = keeping_one_day(&pg, &storage);
    let remote_dir: &Path = &storage.path().join("b/acme");
    std::fs::create_dir_all(remote_dir).unwrap();
    std::fs::write(remote_dir.join("notes.txt"), "the operator's").unwrap();
    std::fs::write(
        remote_dir.join("acme-20200101T000000Z.sql.gz"),
        "not verified",
    )
    .unwrap();
    for _ in 0..3 {
        let (code, out) = backup(&site);
        assert_eq!(code, Some(0), "{out}");
        next_second();
    }
    let local = dumps(&site.files());
    assert_eq!(local.len(), 1, "keep_daily = 1 locally");
    let remote = storage.files("b/acme");
    assert!(remote.contains(&"notes.txt".to_string()), "{remote:?}");
    assert!(
        remote.contains(&"acme-20200101T000000Z.sql.gz".to_string()),
        "an unverified file of our pattern is not ours to delete: {remote:?}"
    );
    let ours: Vec<&String> = remote
        .iter()
        .filter(|f| f.ends_with(".sql.gz") && !f.starts_with("acme-2020"))
        .collect();
    assert_eq!(ours, vec![&local[0]], "{remote:?}");
    assert_eq!(record(&site)["copies"].as_object().unwrap().len(), 1);
}

#[test]
fn sumctl_check_tells_a_missing_configuration_a_missing_remote_and_a_dead_one_apart() {
    let (Some(pg), Some(storage)) = (Pg::start(), Storage::new()) else {
        return;
    };
    let site = site_with_data(
        &pg,
        &format!("offsite = \"store:{}/b\"", storage.path().display()),
    );
    let check = || {
        let out = Command::new(env!("CARGO_BIN_EXE_sumctl"))
            .arg("check")
            .env("SUM_ROOT", site.root.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    };
    let (code, out) = check();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("site acme: off-host:") && out.contains("rclone.conf does not exist"),
        "{out}"
    );
    storage.configure(&site, &["vault"]);
    let (code, out) = check();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the remote `store` is not defined in"),
        "{out}"
    );
    // Defined, but the server does not answer.
    let conf = site.root.path().join("etc/sum/rclone.conf");
    storage.configure(&site, &["gone"]);
    let text_of = std::fs::read_to_string(&conf)
        .unwrap()
        .replace("[gone]", "[store]");
    std::fs::write(&conf, text_of).unwrap();
    let (code, out) = check();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the remote `store` is defined but store:"),
        "{out}"
    );
    assert!(out.contains("does not answer"), "{out}");
    storage.configure(&site, &["store"]);
    let (code, out) = check();
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("site acme: off-host: store:") && out.contains("(local) answers"),
        "{out}"
    );
}

#[test]
fn the_media_directory_is_mirrored_and_what_it_replaces_is_kept() {
    let (Some(pg), Some(storage)) = (Pg::start(), Storage::new()) else {
        return;
    };
    let site = site_with_data(
        &pg,
        &format!(
            "media = true\noffsite = \"store:{}/b\"",
            storage.path().display()
        ),
    );
    storage.configure(&site, &["store"]);
    let media = site.root.path().join("srv/sum/acme/media");
    std::fs::create_dir_all(media.join("original_images")).unwrap();
    for i in 0..20 {
        std::fs::write(
            media.join(format!("original_images/{i}.bin")),
            vec![i as u8; 1000 + i],
        )
        .unwrap();
    }
    let (code, out) = backup(&site);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("off-host: media mirrored to store:"), "{out}");
    assert!(
        out.contains(": 20 file(s) copied, 0 replaced or deleted"),
        "{out}"
    );
    let mirror = storage.path().join("b/acme/media/original_images");
    for i in 0..20 {
        let name = format!("{i}.bin");
        assert_eq!(
            std::fs::read(mirror.join(&name)).unwrap(),
            std::fs::read(media.join("original_images").join(&name)).unwrap()
        );
    }
    // The media archive stays local: the mirror stands for it off-host.
    assert!(
        !storage
            .files("b/acme")
            .iter()
            .any(|f| f.ends_with(".media.tar.gz")),
        "{:?}",
        storage.files("b/acme")
    );
    // One file changed, one deleted, one new: only those travel.
    std::fs::write(media.join("original_images/3.bin"), b"changed").unwrap();
    std::fs::remove_file(media.join("original_images/4.bin")).unwrap();
    std::fs::write(media.join("original_images/new.bin"), b"new").unwrap();
    next_second();
    let (code, out) = backup(&site);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(": 2 file(s) copied, 2 replaced or deleted kept in"),
        "{out}"
    );
    assert_eq!(std::fs::read(mirror.join("3.bin")).unwrap(), b"changed");
    assert!(!mirror.join("4.bin").exists());
    let replaced = storage.files("b/acme/media-replaced");
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    let kept = storage
        .path()
        .join("b/acme/media-replaced")
        .join(&replaced[0])
        .join("original_images");
    assert_eq!(std::fs::read(kept.join("3.bin")).unwrap(), vec![3u8; 1003]);
    assert_eq!(std::fs::read(kept.join("4.bin")).unwrap(), vec![4u8; 1004]);
    assert!(record(&site)["media_utc"].is_string());
    assert_eq!(record(&site)["replaced"][0], replaced[0].as_str());
    // The next night keeps only its own backup (the same day's rule), so
    // what the mirror set aside before it goes too.
    next_second();
    let (code, out) = backup(&site);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "off-host: retention deleted media-replaced/{}",
            replaced[0]
        )),
        "{out}"
    );
    assert!(storage.files("b/acme/media-replaced").is_empty());
    assert!(record(&site).get("replaced").is_none(), "{}", record(&site));
}

#[test]
fn a_restore_from_off_host_fetches_verifies_and_restores_and_refuses_a_corrupted_copy() {
    let (Some(pg), Some(storage)) = (Pg::start(), Storage::new()) else {
        return;
    };
    let site = site_with_data(
        &pg,
        &format!("offsite = \"store:{}/b\"", storage.path().display()),
    );
    storage.configure(&site, &["store"]);
    let (code, out) = backup(&site);
    assert_eq!(code, Some(0), "{out}");
    let name = dumps(&site.files()).remove(0);
    // The server is lost: no local backup is left.
    for f in site.files() {
        std::fs::remove_file(site.backups().join(f)).unwrap();
    }
    let listing = sumctl_backups(&site);
    assert!(
        listing.contains("no backups of acme in") && listing.contains("off-host only"),
        "{listing}"
    );
    pg.sql(
        "acme",
        "INSERT INTO notes (title) VALUES ('after the backup')",
    );
    let count = || {
        pg.sql("acme", "SELECT count(*) FROM notes")
            .trim()
            .to_string()
    };
    assert_eq!(count(), "20001");
    let restore = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sum-restore"))
            .args(args)
            .env("SUM_ROOT", site.root.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    };
    // A corrupted copy on the remote is refused before anything changes.
    let remote_dump = storage.path().join("b/acme").join(&name);
    let good = std::fs::read(&remote_dump).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    std::fs::write(&remote_dump, &bad).unwrap();
    let (code, out) = restore(&["acme", "offsite:latest", "--i-know-this-will-overwrite"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("refusing the off-host copy of {name}")),
        "{out}"
    );
    assert_eq!(count(), "20001", "the database was not touched");
    assert_eq!(
        site.files(),
        Vec::<String>::new(),
        "nothing was left behind"
    );
    // The good copy: a rehearsal, then the restore.
    std::fs::write(&remote_dump, &good).unwrap();
    // The test's server is not this host's PostgreSQL: the scratch
    // database is made beforehand, as on a managed server.
    pg.sql("postgres", "CREATE DATABASE acme_rehearsal OWNER acme");
    let (code, out) = restore(&["acme", "offsite:latest", "--into", "acme_rehearsal"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("fetched {name} from off-host")),
        "{out}"
    );
    assert_eq!(
        pg.sql("acme_rehearsal", "SELECT count(*) FROM notes")
            .trim(),
        "20000"
    );
    let (code, out) = restore(&[
        "acme",
        &format!("offsite:{}", name.trim_end_matches(".sql.gz")),
        "--i-know-this-will-overwrite",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(count(), "20000", "{out}");
    assert!(
        site.files().contains(&name),
        "the fetched backup is kept locally"
    );
    let (code, out) = restore(&["acme", "offsite:acme-20200101T000000Z", "--into", "x"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("no such backup with its manifest on store:"),
        "{out}"
    );
}

#[test]
fn the_off_host_media_mirror_comes_back_with_a_restore_from_off_host() {
    let (Some(pg), Some(storage)) = (Pg::start(), Storage::new()) else {
        return;
    };
    let site = site_with_data(
        &pg,
        &format!(
            "media = true\noffsite = \"store:{}/b\"",
            storage.path().display()
        ),
    );
    storage.configure(&site, &["store"]);
    let media = site.root.path().join("srv/sum/acme/media");
    std::fs::create_dir_all(media.join("uploads/ünï")).unwrap();
    std::fs::write(media.join("uploads/ünï/cake.jpg"), vec![7u8; 50_000]).unwrap();
    std::fs::write(media.join("readme.txt"), "hello").unwrap();
    let (code, out) = backup(&site);
    assert_eq!(code, Some(0), "{out}");
    // The server is lost: no backups, no media.
    std::fs::remove_dir_all(&media).unwrap();
    std::fs::create_dir_all(&media).unwrap();
    for f in site.files() {
        std::fs::remove_file(site.backups().join(f)).unwrap();
    }
    let restore = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sum-restore"))
            .args(args)
            .env("SUM_ROOT", site.root.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    };
    // A rehearsal loads the dump and leaves the media directory alone.
    pg.sql("postgres", "CREATE DATABASE media_rehearsal OWNER acme");
    let (code, out) = restore(&[
        "acme",
        "offsite:latest",
        "--media",
        "--into",
        "media_rehearsal",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.lines().any(|l| l
            == "--into: the off-host media mirror was not copied; the media directory was not \
                touched"),
        "{out}"
    );
    assert_eq!(std::fs::read_dir(&media).unwrap().count(), 0);
    let (code, out) = restore(&[
        "acme",
        "offsite:latest",
        "--i-know-this-will-overwrite",
        "--media",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let mirror = format!("store:{}/b/acme/media", storage.path().display());
    assert!(
        out.contains(&format!("copied the off-host media {mirror} into "))
            && out.contains(&format!(
                "restored the off-host media {mirror} into {}",
                media.display()
            )),
        "{out}"
    );
    assert_eq!(
        std::fs::read(media.join("uploads/ünï/cake.jpg")).unwrap(),
        vec![7u8; 50_000]
    );
    assert_eq!(
        std::fs::read_to_string(media.join("readme.txt")).unwrap(),
        "hello"
    );
    // --media-only from off-host touches no database.
    std::fs::remove_file(media.join("readme.txt")).unwrap();
    pg.sql("acme", "INSERT INTO notes (title) VALUES ('kept')");
    let (code, out) = restore(&[
        "acme",
        "offsite:latest",
        "--i-know-this-will-overwrite",
        "--media-only",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        std::fs::read_to_string(media.join("readme.txt")).unwrap(),
        "hello"
    );
    assert_eq!(
        pg.sql("acme", "SELECT count(*) FROM notes WHERE title = 'kept'")
            .trim(),
        "1",
        "{out}"
    );
}

/// The pids of `parent`'s rclone children whose command line has `verb`.
fn rclone_children(parent: u32, verb: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid …
        let Some((comm, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let ppid = rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if comm.ends_with("(rclone")
            && ppid == Some(parent)
            && cmdline.split(|b| *b == 0).any(|a| a == verb.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}

#[test]
fn a_copy_killed_halfway_is_not_counted_and_the_next_run_repairs_it() {
    let (Some(pg), Some(storage)) = (Pg::start(), Storage::new()) else {
        return;
    };
    let site = site_with_data(
        &pg,
        &format!("offsite = \"store:{}/b\"", storage.path().display()),
    );
    storage.configure(&site, &["store"]);
    // A slow line, so that the copy is caught halfway.
    let child = Command::new(env!("CARGO_BIN_EXE_sum-backup"))
        .arg("acme")
        .env("SUM_ROOT", site.root.path())
        .env("RCLONE_BWLIMIT", "64k")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let pid = loop {
        if let Some(pid) = rclone_children(child.id(), "copy").first() {
            break *pid;
        }
        assert!(std::time::Instant::now() < deadline, "no rclone copy seen");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // Let some bytes travel, then kill it, as the OOM killer would.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let printed = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(
        printed.contains("the off-host copy to store:")
            && printed.contains("the local backup is verified and kept")
            && printed.contains("rclone copy failed (signal: 9"),
        "{printed}"
    );
    let local = dumps(&site.files());
    assert_eq!(local.len(), 1, "{printed}");
    let listed = text(&site.run(&["acme", "--list"]).stdout);
    assert!(
        listed.contains("NOT OFF-HOST YET") && listed.contains("here only"),
        "{listed}"
    );
    let json = text(&site.run(&["acme", "--list", "--json"]).stdout);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json[0]["file"], local[0].as_str(), "{json}");
    assert_eq!(json[0]["offsite"], serde_json::Value::Null, "{json}");
    // Nothing was recorded as off-host, whatever the remote holds.
    let recorded = site.root.path().join("srv/sum/acme/state/offsite.json");
    if recorded.exists() {
        assert_eq!(record(&site)["copies"], serde_json::json!({}), "{printed}");
    }
    // The next run copies what is missing and checks it.
    next_second();
    let (code, out) = backup(&site);
    assert_eq!(code, Some(0), "{out}");
    let local = dumps(&site.files());
    assert_eq!(dumps(&storage.files("b/acme")), local, "{out}");
    for f in storage.files("b/acme") {
        assert_eq!(
            std::fs::read(storage.path().join("b/acme").join(&f)).unwrap(),
            std::fs::read(site.backups().join(&f)).unwrap(),
            "{f} differs on the remote"
        );
    }
    let copies = record(&site)["copies"].as_object().unwrap().clone();
    assert_eq!(copies.keys().cloned().collect::<Vec<_>>(), local, "{out}");
}

#[test]
fn two_sites_backing_up_to_one_remote_at_once_keep_to_their_own_files() {
    let (Some(pg), Some(storage)) = (Pg::start(), Storage::new()) else {
        return;
    };
    let offsite = format!("offsite = \"store:{}/shared\"", storage.path().display());
    let site = site_with_data(&pg, &offsite);
    storage.configure(&site, &["store"]);
    let url = pg.create_site_db("bravo", "other-pw", "bravo");
    pg.sql(
        "bravo",
        "SET ROLE bravo; CREATE TABLE t AS SELECT i, md5(i::text) FROM generate_series(1, 50000) i;",
    );
    let root = site.root.path();
    std::fs::write(
        root.join("etc/sum/sites/bravo.toml"),
        format!(
            "domain = \"bravo.example.com\"\n[git]\nurl = \"https://x.example/b.git\"\n\
             [backup]\n{offsite}\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("srv/sum/bravo")).unwrap();
    std::fs::write(
        root.join("srv/sum/bravo/.env"),
        format!("DATABASE_URL={url}\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("srv/sum/bravo/.env"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    for round in 0..2 {
        if round > 0 {
            next_second();
        }
        let spawn = |name: &str| {
            Command::new(env!("CARGO_BIN_EXE_sum-backup"))
                .arg(name)
                .env("SUM_ROOT", root)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn("acme"), spawn("bravo"));
        for (name, child) in [("acme", a), ("bravo", b)] {
            let out = child.wait_with_output().unwrap();
            let printed = format!("{}{}", text(&out.stdout), text(&out.stderr));
            assert_eq!(
                out.status.code(),
                Some(0),
                "{name}, round {round}: {printed}"
            );
            assert!(
                printed.contains(&format!("off-host: verified {name}-")),
                "{printed}"
            );
        }
        for name in ["acme", "bravo"] {
            let mut local: Vec<String> =
                std::fs::read_dir(root.join(format!("srv/sum/{name}/backups")))
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|f| f.ends_with(".sql.gz"))
                    .collect();
            local.sort();
            let remote = storage.files(&format!("shared/{name}"));
            assert!(
                remote.iter().all(|f| f.starts_with(&format!("{name}-"))),
                "{remote:?}"
            );
            assert_eq!(dumps(&remote), local, "{name}, round {round}");
        }
    }
    assert_eq!(storage.files("shared"), vec!["acme", "bravo"]);
}

#[test]
fn a_remote_copy_of_the_same_size_that_differs_is_copied_again() {
    let (Some(pg), Some(storage)) = (Pg::start(), Storage::new()) else {
        return;
    };
    let site = site_with_data(
        &pg,
        &format!("offsite = \"store:{}/b\"", storage.path().display()),
    );
    storage.configure(&site, &["store"]);
    let (code, out) = backup(&site);
    assert_eq!(code, Some(0), "{out}");
    let dump = dumps(&site.files())[0].clone();
    // Unrecorded, and spoilt without a change of size: what a run cut
    // short leaves on a remote that writes in place.
    std::fs::remove_file(site.root.path().join("srv/sum/acme/state/offsite.json")).unwrap();
    let remote = storage.path().join("b/acme").join(&dump);
    let mut bytes = std::fs::read(&remote).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&remote, &bytes).unwrap();
    let out = site.run(&["acme", "--offsite-only"]);
    let printed = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{printed}");
    assert!(
        printed.contains(&format!("off-host: verified {dump} on ")),
        "{printed}"
    );
    assert_eq!(
        std::fs::read(&remote).unwrap(),
        std::fs::read(site.backups().join(&dump)).unwrap()
    );
    assert_eq!(record(&site)["copies"][dump.as_str()]["check"], "hash");
}

/// The drill found it: remote retention deleted the pre-migrate backup
/// that local retention keeps, so every run copied it and deleted it again.
#[test]
fn remote_retention_keeps_the_pre_migrate_backup_that_local_retention_keeps() {
    let (Some(pg), Some(storage)) = (Pg::start(), Storage::new()) else {
        return;
    };
    let site = keeping_one_day(&pg, &storage);
    let (code, out) = backup(&site);
    assert_eq!(code, Some(0), "{out}");
    let dir = site.backups();
    let pre_migrate = "acme-20240102T010000Z.sql.gz";
    crate::backup::verified_copy(&dir, &dumps(&site.files())[0], pre_migrate);
    let home = site.root.path().join("srv/sum/acme");
    let release = "20240102T005900Z-abc1234";
    std::fs::create_dir_all(home.join("releases").join(release)).unwrap();
    let deployed = serde_json::json!({
        "action": "deploy", "started_utc": "2024-01-02T00:59:00Z",
        "finished_utc": "2024-01-02T01:02:00Z", "who": "root", "git_ref": "v2",
        "release": release, "previous": null, "outcome": "ok", "exit_code": 0,
        "migrations_applied": ["notes.0001_initial"],
        "backup": dir.join(pre_migrate).display().to_string(),
    });
    std::fs::write(home.join("state/history.jsonl"), format!("{deployed}\n")).unwrap();
    next_second();
    let (code, out) = backup(&site);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("off-host: verified {pre_migrate}")),
        "{out}"
    );
    assert!(
        !out.contains(&format!("retention deleted {pre_migrate}")),
        "{out}"
    );
    assert!(
        storage.files("b/acme").iter().any(|f| f == pre_migrate),
        "{out}"
    );
    // The next run has nothing of it to copy again.
    next_second();
    let (code, out) = backup(&site);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains(&format!("verified {pre_migrate}")), "{out}");
    assert!(record(&site)["copies"][pre_migrate].is_object(), "{out}");
    assert!(!sumctl_backups(&site).contains("NOT OFF-HOST YET"));
}
