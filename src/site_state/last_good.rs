//! The last good copy of a site file (`/etc/sum/last-good/<site>.toml`):
//! written after every deploy or rollback that ended with the site serving,
//! read by the generator, the Caddy render step and `sumctl` when the
//! operator's file is rejected (docs/deploy.md).

use std::os::unix::fs::PermissionsExt;

use crate::config::layout::Root;
use crate::config::sites::{load_file, LAST_GOOD_DIR};
use crate::system::fsutil::write_atomic;

/// Records the site file of `site` as its last good copy, if it is still
/// valid: called after a deploy or a rollback that ended with the site
/// serving. Atomic; the copy keeps the file's bytes.
pub fn save(root: &Root, site: &str) -> std::io::Result<()> {
    let file = root.sites_dir().join(format!("{site}.toml"));
    if load_file(&file).is_err() {
        return Ok(());
    }
    let bytes = fs_err::read(&file)?;
    let mode = fs_err::metadata(&file)?.permissions().mode() & 0o777;
    let dir = root.path(LAST_GOOD_DIR);
    fs_err::create_dir_all(&dir)?;
    let copy = dir.join(format!("{site}.toml"));
    if fs_err::read(&copy).ok().as_deref() == Some(bytes.as_slice()) {
        return Ok(());
    }
    write_atomic(&copy, &bytes, mode)
}
