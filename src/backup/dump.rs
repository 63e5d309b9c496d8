//! `sum-backup <site>`: a verified PostgreSQL backup (SPEC §8).
//!
//! A plain-SQL `pg_dump` (no owner or ACL statements) is streamed through
//! gzip in this process into a mode-0600 `.partial` file. It counts as a
//! backup only after every check passed: pg_dump's exit status and stderr,
//! the dump's completion trailer, the gzip stream decoded in step as it was
//! written (`instep`), and after the fsync a re-read of the file from the
//! storage against the size and sha256 written. Then the manifest written
//! (with the tables and rows counted from the stream, and whether they
//! shrank against the previous backup), the rename to the final name (the
//! commit point), the directory fsynced. A failed or killed run leaves no
//! file with a backup's name; the next run removes its partials.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::backup::catalog::{self, backup_name, parse_backup_name, Manifest, PartHashes};
use crate::backup::contents::Counter;
use crate::backup::hashio::{Hashing, PART_SIZE};
use crate::backup::instep::{Sink, Tail, Written};
use crate::config::layout::{Root, SiteLayout};
use crate::config::site::Site;
use crate::probe::pgconn::PgConn;
use crate::system::timefmt;

/// gzip level: measured in benches/backup.sh (docs/benchmarks.md,
/// "Compression level") as the fastest whose size stays within 10% of
/// `gzip -6` on SQL dumps; level 1 is zlib-rs's quick strategy, 40% larger.
pub const GZIP_LEVEL: u32 = 2;

/// A failed backup: what went wrong, in words an operator can act on.
#[derive(Debug)]
pub struct BackupError(pub String);

impl std::fmt::Display for BackupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BackupError {}

fn err(msg: impl Into<String>) -> BackupError {
    BackupError(msg.into())
}

/// How the dump is taken: the database URL and who runs pg_dump.
pub struct DumpSource<'a> {
    /// The site's database (see `appdb`); its password reaches pg_dump
    /// through the environment (see `pgconn`).
    pub conn: &'a PgConn,
    /// Run pg_dump as this uid/gid (the site's account), or as ourselves.
    pub run_as: Option<(u32, u32)>,
    /// Also archive this media directory beside the dump.
    pub media_dir: Option<&'a Path>,
    /// The live release, recorded in the manifest.
    pub release: Option<&'a str>,
    /// The operator's `--accept-shrink`: a dump that shrank against the
    /// previous backup is recorded as accepted and counts like any other.
    pub accept_shrink: bool,
}

/// Writes a verified backup into `dir` and returns its manifest.
pub fn take(
    site: &Site,
    dir: &Path,
    src: &DumpSource,
    now: SystemTime,
) -> Result<Manifest, BackupError> {
    let mut started = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // Names have one-second resolution: a second backup within the same
    // second (a restore's safety backup right after a backup) waits for the
    // next one rather than failing.
    while dir.join(backup_name(&site.name, started)).exists() {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        started = started.max(now);
    }
    let name = backup_name(&site.name, started);
    let final_path = dir.join(&name);
    let partial = dir.join(format!("{name}.partial"));
    let media_name = crate::backup::media::media_name(&name);
    let media_partial = dir.join(format!("{media_name}.partial"));
    let media_final = dir.join(&media_name);
    let cleanup = || {
        let _ = fs_err::remove_file(&partial);
        let _ = fs_err::remove_file(&media_partial);
    };
    let mut manifest = match write_verified(site, &name, &partial, src, started) {
        Ok(m) => m,
        Err(e) => {
            cleanup();
            return Err(e);
        }
    };
    // Compared before publishing, so the manifest says it from the start.
    let listed = catalog::list(&site.name, dir).unwrap_or_default();
    manifest.shrunk = manifest.contents.and_then(|new| {
        crate::backup::shrink::judge(catalog::baseline(&listed), new, src.accept_shrink)
    });
    if let Some(media_dir) = src.media_dir {
        match crate::backup::media::write_verified(
            media_dir,
            &media_partial,
            &media_name,
            GZIP_LEVEL,
        ) {
            Ok(info) => manifest.media = Some(info),
            Err(e) => {
                cleanup();
                return Err(err(format!("the media archive failed: {e}")));
            }
        }
    }
    // The manifest goes first and the dump's rename is the commit point: a
    // dump under its final name without a manifest would look like a backup
    // nobody verified; a media archive without its dump is a leftover.
    let manifest_path = dir.join(format!("{name}.json"));
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    let publish = crate::system::fsutil::write_atomic(&manifest_path, &json, 0o600)
        .and_then(|()| match manifest.media {
            Some(_) => fs_err::rename(&media_partial, &media_final),
            None => Ok(()),
        })
        .and_then(|()| fs_err::rename(&partial, &final_path))
        .and_then(|()| fs_err::File::open(dir)?.sync_all());
    if let Err(e) = publish {
        cleanup();
        let _ = fs_err::remove_file(&media_final);
        let _ = fs_err::remove_file(&manifest_path);
        return Err(err(format!("failed to publish the backup: {e}")));
    }
    Ok(manifest)
}

/// What streaming pg_dump's output saw: the start (for the versions in its
/// header), the end (for the trailer), the byte count, and the tables and
/// rows.
struct Streamed {
    head: Vec<u8>,
    tail: Tail,
    uncompressed: u64,
    counter: Counter,
}

impl Streamed {
    fn push(&mut self, data: &[u8]) {
        if self.head.len() < 2048 {
            let take = data.len().min(2048 - self.head.len());
            self.head.extend_from_slice(&data[..take]);
        }
        self.tail.push(data);
        self.uncompressed += data.len() as u64;
        self.counter.push(data);
    }
}

/// The gzip stream into the partial file, hashed and decoded as it is
/// written.
type DumpWriter = GzEncoder<Sink>;

/// Dumps the database into `partial` and checks everything about it; the
/// manifest of the result.
fn write_verified(
    site: &Site,
    name: &str,
    partial: &Path,
    src: &DumpSource,
    started: u64,
) -> Result<Manifest, BackupError> {
    let conn = src.conn;
    let file = create_partial(partial)?;
    let mut child = spawn_pg_dump(conn, src.run_as)?;
    let mut stdout = child.stdout.take().expect("piped");
    // pg_dump and the server go on while a piece is compressed.
    crate::system::pipes::deepen(&stdout);
    let stderr_reader = crate::system::pipes::read_stderr(&mut child);
    let mut gz = GzEncoder::new(Sink::new(file), Compression::new(GZIP_LEVEL));
    let streamed = match stream(&mut stdout, &mut gz) {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err(format!("failed to write {}: {e}", partial.display())));
        }
    };
    let status = child
        .wait()
        .map_err(|e| err(format!("failed to wait for pg_dump: {e}")))?;
    let stderr = stderr_reader.join().unwrap_or_default();
    check_pg_dump(status, &stderr, &streamed.tail)?;
    let written = finish_partial(gz, partial)?;
    let (sha256, size, parts) = check_written(written, partial, streamed.uncompressed)?;
    let finished = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(Manifest {
        site: site.name.clone(),
        file: name.to_string(),
        size,
        uncompressed_size: streamed.uncompressed,
        database: conn.dbname().unwrap_or("").to_string(),
        contents: Some(streamed.counter.finish()),
        server_version: header_value(&streamed.head, "-- Dumped from database version "),
        client_version: header_value(&streamed.head, "-- Dumped by pg_dump version "),
        started_utc: timefmt::iso_utc(started),
        finished_utc: timefmt::iso_utc(finished),
        release: src.release.map(str::to_string),
        media: None,
        verified: true,
        shrunk: None,
        parts: Some(PartHashes {
            size: PART_SIZE,
            file_sha256: sha256.clone(),
            sha256: parts,
        }),
        sha256,
    })
}

/// The `.partial` file, new, mode 0600 from the first byte whatever the
/// umask.
fn create_partial(partial: &Path) -> Result<File, BackupError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .map_err(|e| err(format!("failed to create {}: {e}", partial.display())))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err(format!("failed to chmod {}: {e}", partial.display())))?;
    Ok(file)
}

/// pg_dump of a plain-SQL dump without owner or ACL statements, as the
/// site's account when given.
fn spawn_pg_dump(conn: &PgConn, run_as: Option<(u32, u32)>) -> Result<Child, BackupError> {
    let mut cmd = Command::new("pg_dump");
    cmd.args(["--format=plain", "--no-owner", "--no-acl", "--no-password"]);
    // The password goes into pg_dump's environment, not its command line.
    conn.apply(&mut cmd)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((uid, gid)) = run_as {
        // std drops the supplementary groups when root changes uid.
        cmd.uid(uid).gid(gid).current_dir("/");
    }
    cmd.spawn().map_err(|e| {
        err(format!(
            "failed to run pg_dump (is postgresql-client installed?): {e}"
        ))
    })
}

/// Copies pg_dump's output into the gzip stream, noting what it saw.
fn stream(stdout: &mut impl Read, gz: &mut DumpWriter) -> std::io::Result<Streamed> {
    let mut seen = Streamed {
        head: Vec::with_capacity(2048),
        tail: Tail::default(),
        uncompressed: 0,
        counter: Counter::new(),
    };
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = stdout.read(&mut buf)?;
        if n == 0 {
            return Ok(seen);
        }
        seen.push(&buf[..n]);
        gz.write_all(&buf[..n])?;
    }
}

/// The majors of the server and of pg_dump when pg_dump refused to dump
/// a server newer than itself ("aborting because of server version
/// mismatch", with a line `server version: 17.6 (…); pg_dump version:
/// 15.14 (…)`, before it in PostgreSQL 14, after it as a detail in 15+).
pub fn newer_server(stderr: &str) -> Option<(u32, u32)> {
    if !stderr.contains("server version mismatch") {
        return None;
    }
    let major = |after: &str| -> Option<u32> {
        let at = stderr.find(after)? + after.len();
        let digits: String = stderr[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    Some((major("server version: ")?, major("pg_dump version: ")?))
}

/// pg_dump succeeded, reported no error and wrote its completion trailer.
fn check_pg_dump(status: ExitStatus, stderr: &str, tail: &Tail) -> Result<(), BackupError> {
    if let Some((server, client)) = newer_server(stderr) {
        return Err(err(format!(
            "the database server is PostgreSQL {server}, newer than this host's pg_dump \
             ({client}), and pg_dump never dumps a newer server: install \
             postgresql-client-{server} (Debian's own from the release that has it, or \
             apt.postgresql.org's), and Debian's pg_dump picks the newest client installed; \
             then take the backup again (docs/packaging.md, \"Debian 12 and Debian 13\")"
        )));
    }
    if !status.success() {
        return Err(err(format!(
            "pg_dump failed ({status}): {}",
            crate::system::text::first_error(stderr).unwrap_or_else(|| "no message".to_string())
        )));
    }
    if stderr.to_ascii_lowercase().contains("error") {
        return Err(err(format!(
            "pg_dump reported an error: {}",
            crate::system::text::last_lines(stderr, 5, 500)
        )));
    }
    if !tail.has_trailer() {
        return Err(err(
            "the dump ended without pg_dump's completion trailer; it is incomplete",
        ));
    }
    Ok(())
}

/// Ends the gzip stream, flushes and fsyncs the file: what was written.
fn finish_partial(gz: DumpWriter, partial: &Path) -> Result<Written, BackupError> {
    let write_failed =
        |e: std::io::Error| err(format!("failed to write {}: {e}", partial.display()));
    let written = gz.finish().and_then(Sink::finish).map_err(write_failed)?;
    written
        .file
        .sync_all()
        .map_err(|e| err(format!("failed to fsync {}: {e}", partial.display())))?;
    Ok(written)
}

/// The stream decoded in step gave every byte pg_dump wrote and its
/// trailer, and the file read back from the storage is what was written:
/// its sha256, size and part hashes.
fn check_written(
    written: Written,
    partial: &Path,
    uncompressed: u64,
) -> Result<(String, u64, Vec<String>), BackupError> {
    let decoded = written
        .checker
        .finish()
        .map_err(|e| err(format!("{}: {e}", partial.display())))?;
    if decoded.uncompressed != uncompressed || !decoded.trailer {
        return Err(err(format!(
            "decoding {} as it was written gave {} bytes{}, but pg_dump wrote {uncompressed}",
            partial.display(),
            decoded.uncompressed,
            if decoded.trailer {
                ""
            } else {
                " without pg_dump's completion trailer"
            }
        )));
    }
    let (size, sha256) = crate::backup::instep::reread(&written.file, partial)
        .map_err(|e| err(format!("failed to read back {}: {e}", partial.display())))?;
    if size != written.size || sha256 != written.sha256 {
        return Err(err(format!(
            "reading {} back from the disk gave size {size} sha256 {sha256}, but {} {} were written",
            partial.display(),
            written.size,
            written.sha256
        )));
    }
    Ok((written.sha256, written.size, written.parts))
}

/// What a full re-read of a backup file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    pub size: u64,
    pub sha256: String,
    pub uncompressed_size: u64,
}

/// Reads a backup completely: the gzip stream must decode to its end and the
/// dump must end with pg_dump's trailer.
pub fn verify_file(path: &Path) -> Result<FileCheck, BackupError> {
    let file = fs_err::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut hashing = Hashing::new(BufReader::with_capacity(1 << 20, file));
    let mut tail = Tail::default();
    let mut uncompressed = 0u64;
    {
        let mut gz = MultiGzDecoder::new(&mut hashing);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = gz.read(&mut buf).map_err(|e| {
                err(format!(
                    "{} is not a complete gzip stream: {e}",
                    path.display()
                ))
            })?;
            if n == 0 {
                break;
            }
            tail.push(&buf[..n]);
            uncompressed += n as u64;
        }
    }
    // Anything after the gzip stream would be ignored by gunzip; refuse it.
    let mut rest = Vec::new();
    hashing
        .read_to_end(&mut rest)
        .map_err(|e| err(format!("failed to read {}: {e}", path.display())))?;
    if !rest.is_empty() {
        return Err(err(format!(
            "{} has {} bytes after its gzip stream",
            path.display(),
            rest.len()
        )));
    }
    if !tail.has_trailer() {
        return Err(err(format!(
            "{} does not end with pg_dump's completion trailer; the dump is truncated",
            path.display()
        )));
    }
    let (sha256, size, _) = hashing.finish();
    Ok(FileCheck {
        size,
        sha256,
        uncompressed_size: uncompressed,
    })
}

/// The database name of a connection string, for the manifest and
/// messages; empty when it names none or cannot be read.
pub fn database_name(url: &str) -> String {
    PgConn::parse(url)
        .ok()
        .and_then(|c| c.dbname().map(str::to_string))
        .unwrap_or_default()
}

/// A value from the comment header pg_dump writes at the top of a dump.
fn header_value(head: &[u8], prefix: &str) -> String {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Removes leftovers of killed runs: our own `.partial` files and manifests
/// without a backup. Only call this while holding the site lock.
pub fn clean_partials(site: &str, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for entry in fs_err::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let ours = |n: &str| {
            parse_backup_name(site, n).is_some()
                || crate::backup::media::dump_of(n)
                    .is_some_and(|d| parse_backup_name(site, &d).is_some())
        };
        let leftover = if let Some(base) = name.strip_suffix(".partial") {
            ours(base)
        } else if let Some(base) = name.strip_suffix(".json") {
            parse_backup_name(site, base).is_some() && !dir.join(base).exists()
        } else if let Some(dump) = crate::backup::media::dump_of(name) {
            parse_backup_name(site, &dump).is_some() && !dir.join(dump).exists()
        } else {
            false
        };
        if leftover {
            fs_err::remove_file(&path)?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// The paths `sum-backup` uses for a site under a root.
pub fn backups_dir(root: &Root, site: &str) -> PathBuf {
    root.path(SiteLayout::new(site).backups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_newer_server_is_named_with_both_majors() {
        // PostgreSQL 15's pg_dump against a 17 server (the detail after).
        let pg15 = "pg_dump: error: aborting because of server version mismatch\n\
                    pg_dump: detail: server version: 17.6 (Debian 17.6-0+deb13u1); pg_dump version: 15.14 (Debian 15.14-0+deb12u1)\n";
        assert_eq!(newer_server(pg15), Some((17, 15)));
        // PostgreSQL 14's order: the versions first.
        let pg14 = "pg_dump: error: server version: 15.6 (Ubuntu 15.6-1.pgdg22.04+1); pg_dump version: 14.7\n\
                    pg_dump: error: aborting because of server version mismatch\n";
        assert_eq!(newer_server(pg14), Some((15, 14)));
        assert_eq!(
            newer_server("pg_dump: error: connection to server failed"),
            None
        );
        assert_eq!(newer_server(""), None);
    }

    proptest! {
        #[test]
        fn newer_server_reads_any_versions_and_never_panics(
            server in 10u32..40, client in 9u32..39, minor in 0u32..30,
            junk in "[ -~\n]{0,200}",
        ) {
            let text = format!(
                "{junk}\npg_dump: error: aborting because of server version mismatch\n\
                 pg_dump: detail: server version: {server}.{minor} (x); pg_dump version: {client}.{minor}\n"
            );
            let found = newer_server(&text);
            // junk may itself say "server version: ": then the first wins,
            // as in pg_dump's output only one such line exists.
            if !junk.contains("server version: ") && !junk.contains("pg_dump version: ") {
                prop_assert_eq!(found, Some((server, client)));
            }
            let _ = newer_server(&junk);
        }
    }

    proptest! {
        #[test]
        fn headers_and_urls_from_outside_never_panic(
            head in proptest::collection::vec(any::<u8>(), 0..2048),
            url in any::<String>(),
        ) {
            let _ = header_value(&head, "-- Dumped from database version");
            let _ = database_name(&url);
        }
    }
}
