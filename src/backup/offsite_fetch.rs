//! `sum-restore <site> offsite:latest|offsite:<name>`: a backup fetched
//! from the site's off-host target (see `offsite`) into the local backups
//! directory, verified like a local file before it counts.

use std::path::Path;

use crate::backup::catalog;
use crate::backup::offsite::{configured, name_list, target, Rclone, Target};
use crate::config::layout::Root;
use crate::config::site::Site;

/// `offsite:latest` or `offsite:<name>` (for `sum-restore`): that backup's
/// dump and manifest, fetched from the target into a private staging
/// directory in `dir`, verified completely (the gzip stream, its trailer,
/// and the size and SHA-256 its manifest records), and then moved into
/// `dir` as a local backup like any other. A verified local copy is used
/// as it is. Its name, or what is wrong; a copy that does not verify is
/// deleted and nothing else changes.
pub fn fetch(root: &Root, site: &Site, dir: &Path, spec: &str) -> Result<String, String> {
    let which = spec.strip_prefix("offsite:").unwrap_or(spec);
    let Some(target) = target(site) else {
        return Err(format!(
            "{spec}: site {} has no [backup] offsite in its site file",
            site.name
        ));
    };
    let rclone = Rclone::new(root);
    configured(root, &rclone, &target)?;
    let remote = rclone.list(&target.dir)?;
    let mut dumps: Vec<&String> = remote
        .keys()
        .filter(|n| catalog::parse_backup_name(&site.name, n).is_some())
        .filter(|n| remote.contains_key(&format!("{n}.json")))
        .collect();
    dumps.sort_by_key(|n| std::cmp::Reverse(catalog::parse_backup_name(&site.name, n)));
    let name = match which {
        "latest" => dumps.first().map(|n| n.to_string()),
        n => {
            let n = if n.ends_with(".sql.gz") {
                n.to_string()
            } else {
                format!("{n}.sql.gz")
            };
            dumps.iter().any(|d| **d == n).then_some(n)
        }
    };
    let Some(name) = name else {
        let newest: Vec<&str> = dumps.iter().take(3).map(|s| s.as_str()).collect();
        return Err(format!(
            "{spec}: no such backup with its manifest on {} (the newest there: {})",
            target.dir,
            if newest.is_empty() {
                "none".to_string()
            } else {
                newest.join(", ")
            }
        ));
    };
    let local = catalog::list(&site.name, dir).unwrap_or_default();
    if local.iter().any(|b| b.file == name && b.verified) {
        return Ok(name);
    }
    let staging = dir.join(format!(".offsite-{name}"));
    let result = fetch_into(&rclone, &target, &name, &staging, dir);
    let _ = fs_err::remove_dir_all(&staging);
    result.map(|()| name)
}

/// Copies `name` and its manifest into `staging`, verifies them, and
/// moves them into `dir`: the manifest first, the dump last (the commit
/// point, as in `sum-backup`).
fn fetch_into(
    rclone: &Rclone,
    target: &Target,
    name: &str,
    staging: &Path,
    dir: &Path,
) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    // A fresh host has no backups directory yet.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("failed to create {}: {e}", dir.display()))?;
    let _ = fs_err::remove_dir_all(staging);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(staging)
        .map_err(|e| format!("failed to create {}: {e}", staging.display()))?;
    let files = vec![name.to_string(), format!("{name}.json")];
    let list = name_list(&files)?;
    let from = list.path().display().to_string();
    let to = staging.display().to_string();
    rclone
        .run(&[
            "copy",
            "--no-traverse",
            "--files-from",
            &from,
            &target.dir,
            &to,
        ])
        .map_err(|f| f.message)?;
    let dump = staging.join(name);
    let manifest: crate::backup::catalog::Manifest =
        serde_json::from_slice(&fs_err::read(staging.join(&files[1])).map_err(|e| e.to_string())?)
            .map_err(|e| format!("the off-host manifest of {name} is not a manifest: {e}"))?;
    let check = crate::backup::dump::verify_file(&dump)
        .map_err(|e| format!("refusing the off-host copy of {name}: {e}; nothing was changed"))?;
    if manifest.file != name || manifest.size != check.size || manifest.sha256 != check.sha256 {
        return Err(format!(
            "refusing the off-host copy of {name}: it does not match its manifest (size {} vs \
             {}, sha256 {} vs {}); nothing was changed",
            check.size, manifest.size, check.sha256, manifest.sha256
        ));
    }
    for f in [&files[1], &files[0]] {
        fs_err::rename(staging.join(f), dir.join(f)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The off-host media mirror (`<target>/media`, see `offsite`) copied into
/// a new directory beside the site's media directory, checked to hold
/// every file with its size, and given the owner and modes of media: a
/// restore's media when its backup comes from off-host, where no media
/// archive is kept. The media directory itself is not touched (see
/// `restore_media::Staged::swap`). Also what the report names as the
/// source.
pub fn stage_mirror(
    root: &Root,
    site: &Site,
    site_account: Option<(u32, u32)>,
    log: &mut dyn std::io::Write,
) -> Result<(crate::backup::restore_media::Staged, String), String> {
    let Some(target) = target(site) else {
        return Err(format!("site {} has no [backup] offsite", site.name));
    };
    let rclone = Rclone::new(root);
    configured(root, &rclone, &target)?;
    let mirror = format!("{}/media", target.dir);
    // With the slash rclone takes it as a directory at once, without first
    // asking for an object of that name (an S3 server may answer that
    // with an error rather than "not found").
    let from = format!("{mirror}/");
    let copy = |into: &Path| {
        let to = into.display().to_string();
        rclone
            .run(&["copy", "--links", &from, &to])
            .and_then(|_| rclone.run(&["check", "--one-way", "--size-only", "--links", &from, &to]))
            .map(|_| ())
            .map_err(|f| f.message)
    };
    let media_dir = crate::backup::media::site_media_dir(root, &site.name);
    let owner = crate::backup::restore_media::media_owner(site_account);
    let now = crate::system::timefmt::now_unix();
    let staged = crate::backup::restore_media::stage_with(
        &media_dir,
        owner,
        now,
        &format!("copying the off-host media {mirror}"),
        &copy,
    )
    .map_err(|e| {
        format!(
            "{e}; nothing was changed: the media directory {} is as it was",
            media_dir.display()
        )
    })?;
    let _ = writeln!(
        log,
        "copied the off-host media {mirror} into {} (every file there, with its size)",
        staged.staging.display()
    );
    Ok((staged, mirror))
}

/// The media a restore puts in place, staged beside the media directory:
/// the backup's archive unpacked, or with `mirror` the off-host mirror
/// copied ([`stage_mirror`]); and where they came from. Nothing when
/// neither is asked for.
pub fn stage_restore_media(
    root: &Root,
    site: &Site,
    archive: Option<&crate::backup::restore_media::Archive>,
    mirror: bool,
    site_account: Option<(u32, u32)>,
    log: &mut dyn std::io::Write,
) -> Result<
    (
        Option<crate::backup::restore_media::Staged>,
        Option<std::path::PathBuf>,
    ),
    String,
> {
    use crate::backup::restore_media::stage_site_media;
    match archive {
        Some(a) => stage_site_media(root, &site.name, a, site_account, log)
            .map(|s| (Some(s), Some(a.path.clone())))
            .map_err(|e| e.to_string()),
        None if mirror => stage_mirror(root, site, site_account, log)
            .map(|(s, m)| (Some(s), Some(std::path::PathBuf::from(m)))),
        None => Ok((None, None)),
    }
}
