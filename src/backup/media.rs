//! The media archive beside a database backup (`[backup] media`): the site's
//! persistent media directory as `<site>-<ts>.media.tar.gz`, with the same
//! guarantees as the dump: a 0600 `.partial` first, a full re-read that must
//! match the size and SHA-256 written, fsync, and publication together with
//! the dump under the same manifest.

use std::fs::OpenOptions;
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::backup::hashio::Hashing;
use crate::config::layout::{Root, SiteLayout};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};

/// What the manifest records about the media archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaInfo {
    pub file: String,
    pub size: u64,
    pub sha256: String,
    /// Entries in the archive (files, directories, links).
    pub entries: u64,
}

/// The site's persistent media directory, where the live release's deploy
/// recorded Django's effective MEDIA_ROOT (an in-release MEDIA_ROOT is
/// linked to, and recorded as, `media/`), else `media/`: what `sum-backup`
/// archives and `sum-restore --media` replaces.
pub fn site_media_dir(root: &Root, site: &str) -> PathBuf {
    root.path(
        crate::site_state::live_paths(root, site)
            .media_dir
            .unwrap_or_else(|| SiteLayout::new(site).media_dir),
    )
}

/// `<site>-<ts>.media.tar.gz` for the dump `<site>-<ts>.sql.gz`.
pub fn media_name(dump_name: &str) -> String {
    format!(
        "{}.media.tar.gz",
        dump_name.strip_suffix(".sql.gz").unwrap_or(dump_name)
    )
}

/// The dump a media archive belongs to.
pub fn dump_of(media_name: &str) -> Option<String> {
    media_name
        .strip_suffix(".media.tar.gz")
        .map(|base| format!("{base}.sql.gz"))
}

/// Archives `media_dir` into `partial` (created 0600) and verifies it.
pub fn write_verified(
    media_dir: &Path,
    partial: &Path,
    name: &str,
    level: u32,
) -> Result<MediaInfo, String> {
    let ctx =
        |verb: &str, e: std::io::Error| format!("failed to {verb} {}: {e}", partial.display());
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .map_err(|e| ctx("create", e))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| ctx("chmod", e))?;
    let sink = Hashing::new(std::io::BufWriter::with_capacity(1 << 20, file));
    let mut builder = tar::Builder::new(GzEncoder::new(sink, Compression::new(level)));
    // Uploaded files are archived as they are: links stay links.
    builder.follow_symlinks(false);
    builder
        .append_dir_all(".", media_dir)
        .map_err(|e| format!("failed to archive {}: {e}", media_dir.display()))?;
    let gz = builder.into_inner().map_err(|e| ctx("write", e))?;
    let mut sink = gz.finish().map_err(|e| ctx("write", e))?;
    sink.flush().map_err(|e| ctx("write", e))?;
    let (sha256, size, buffered) = sink.finish();
    let file = buffered
        .into_inner()
        .map_err(|e| ctx("write", e.into_error()))?;
    file.sync_all().map_err(|e| ctx("fsync", e))?;
    drop(file);
    let check = verify(partial)?;
    if check.size != size || check.sha256 != sha256 {
        return Err(format!(
            "re-reading {} gave size {} sha256 {}, but {size} {sha256} were written",
            partial.display(),
            check.size,
            check.sha256
        ));
    }
    Ok(MediaInfo {
        file: name.to_string(),
        size,
        sha256,
        entries: check.entries,
    })
}

/// Reads a media archive completely: every entry of the tar inside the gzip.
pub fn verify(path: &Path) -> Result<MediaInfo, String> {
    read_entries(path, &mut |entry| {
        std::io::copy(entry, &mut std::io::sink())
            .map(drop)
            .map_err(|e| not_complete(path, &e))
    })
}

/// One entry of a media archive as [`read_entries`] hands it on.
pub type Entry<'a, 'r> = tar::Entry<'a, &'r mut dyn Read>;

/// Reads a media archive from its first byte to its last, handing every tar
/// entry to `each` (which may read it or unpack it), decoding to the end of
/// the gzip stream so its CRC is checked, and refusing bytes after it; the
/// archive's size, SHA-256 and number of entries.
pub fn read_entries(
    path: &Path,
    each: &mut dyn FnMut(&mut Entry) -> Result<(), String>,
) -> Result<MediaInfo, String> {
    let file = fs_err::File::open(path).map_err(|e| e.to_string())?;
    let mut hashing = Hashing::new(BufReader::with_capacity(1 << 20, file));
    let mut entries = 0u64;
    {
        let mut gz = GzDecoder::new(&mut hashing);
        let mut archive = tar::Archive::new(&mut gz as &mut dyn Read);
        // An entry unpacked over a file already there fails instead of
        // replacing it.
        archive.set_overwrite(false);
        let bad = |e: std::io::Error| not_complete(path, &e);
        for entry in archive.entries().map_err(bad)? {
            each(&mut entry.map_err(bad)?)?;
            entries += 1;
        }
        std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(bad)?;
    }
    let mut rest = Vec::new();
    hashing
        .read_to_end(&mut rest)
        .map_err(|e| format!("failed to read {}: {e}", path.display()))?;
    if !rest.is_empty() {
        return Err(format!(
            "{} has {} bytes after its gzip stream",
            path.display(),
            rest.len()
        ));
    }
    let (sha256, size, _) = hashing.finish();
    Ok(MediaInfo {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size,
        sha256,
        entries,
    })
}

fn not_complete(path: &Path, e: &std::io::Error) -> String {
    format!("{} is not a complete media archive: {e}", path.display())
}
