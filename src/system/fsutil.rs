//! Atomic file-system writes: never a half-written unit, snippet or link.
//!
//! Write to a temporary name in the same directory, set the mode, fsync,
//! rename over the final name, fsync the directory.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fs_err as fs;

fn temp_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = format!(".{}.tmp-{}", name.unwrap_or_default(), std::process::id());
    path.with_file_name(tmp)
}

/// Makes a directory's entries (new names, renames) durable.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Atomically replaces `path` with `contents`, created with `mode`.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = temp_name(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| with_path(e, "create", &tmp))?;
        // The umask may have narrowed the mode; set it exactly.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(contents)
            .and_then(|_| f.sync_all())
            .map_err(|e| with_path(e, "write", &tmp))?;
        fs::rename(&tmp, path)?;
        fsync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = fs_err::remove_file(&tmp);
    }
    result
}

/// Atomically points the symlink `link` at `target`.
pub fn symlink_atomic(target: &Path, link: &Path) -> std::io::Result<()> {
    let tmp = temp_name(link);
    let _ = fs_err::remove_file(&tmp);
    fs::os::unix::fs::symlink(target, &tmp)?;
    if let Err(e) = fs::rename(&tmp, link) {
        let _ = fs_err::remove_file(&tmp);
        return Err(e);
    }
    fsync_dir(link.parent().unwrap_or(Path::new(".")))
}

/// Calls `f` on every entry of a tree, `path` included, each directory
/// after what it holds, without following symlinks.
pub fn walk(
    path: &Path,
    f: &mut dyn FnMut(&Path, &std::fs::Metadata) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let m = fs::symlink_metadata(path)?;
    if m.is_dir() {
        for entry in fs::read_dir(path)? {
            walk(&entry?.path(), f)?;
        }
    }
    f(path, &m)
}

/// The file name a symlink points at (`releases/<r>` → `<r>`): which
/// release or venv the `app` and `venv` links of a site name.
pub fn link_name(link: &Path) -> Option<String> {
    fs_err::read_link(link)
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// Adds the verb and the path to an I/O error, as fs-err does.
pub fn with_path(e: std::io::Error, verb: &str, path: &Path) -> std::io::Error {
    std::io::Error::new(
        e.kind(),
        format!("failed to {verb} {}: {e}", path.display()),
    )
}
