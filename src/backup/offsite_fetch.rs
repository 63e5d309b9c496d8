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
