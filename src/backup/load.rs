//! Loading a dump into a database in one transaction that commits only
//! when every byte loaded was checked (docs/backups.md, "Restore").
//!
//! psql reads `BEGIN`, `DROP OWNED BY CURRENT_USER` and then the dump as
//! this process decodes it; `COMMIT` follows only after the whole file
//! matched: its SHA-256 and size against the manifest, the gzip stream to
//! its end (CRC-32 and length), the length of the dump and pg_dump's
//! completion trailer. Where the manifest hashes the file in parts, each
//! part is checked before any byte of it is decoded, so psql never reads a
//! byte that differs from what pg_dump wrote. A failed check closes psql's
//! input without a `COMMIT`: the server rolls the transaction back and the
//! database is as it was.
//!
//! [`precheck`] is the fast look before anything is touched: the size, the
//! gzip header and end, and the first and last parts.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};

use crate::backup::catalog::{Manifest, PartHashes};
use crate::backup::hashio::{hex, sha256_hex};
use crate::backup::instep::Tail;
use crate::probe::pgconn::PgConn;

/// A failed check of the file: where its data stopped matching.
#[derive(Debug)]
pub struct Mismatch(pub String);

/// The size, the gzip header and end, and the first and last parts of
/// `path` match `m`, which hashes the file in parts.
pub fn precheck(path: &Path, m: &Manifest, parts: &PartHashes) -> Result<(), Mismatch> {
    let name = path.display();
    let mut f = fs_err::File::open(path).map_err(|e| Mismatch(e.to_string()))?;
    let size = f.metadata().map_err(|e| Mismatch(e.to_string()))?.len();
    if size != m.size {
        return Err(Mismatch(format!(
            "{name} is {size} bytes, but its manifest says {}",
            m.size
        )));
    }
    let count = usize::try_from(size.div_ceil(parts.size.max(1))).unwrap_or(usize::MAX);
    if parts.size == 0 || count != parts.sha256.len() || size < 18 {
        return Err(Mismatch(format!(
            "the manifest of {name} does not describe a file of {size} bytes in parts of {} \
             ({} part hashes)",
            parts.size,
            parts.sha256.len()
        )));
    }
    let mut head = [0u8; 3];
    read_at(&mut f, 0, &mut head)?;
    if head != [0x1f, 0x8b, 0x08] {
        return Err(Mismatch(format!(
            "{name} does not start with a gzip header"
        )));
    }
    let mut end = [0u8; 4];
    read_at(&mut f, size - 4, &mut end)?;
    if u32::from_le_bytes(end) != m.uncompressed_size as u32 {
        return Err(Mismatch(format!(
            "the gzip stream of {name} ends with a length of {} bytes (modulo 2^32), but its \
             manifest says {}",
            u32::from_le_bytes(end),
            m.uncompressed_size
        )));
    }
    for i in [0, count - 1] {
        let start = i as u64 * parts.size;
        let mut part = vec![0u8; usize::try_from((size - start).min(parts.size)).unwrap_or(0)];
        read_at(&mut f, start, &mut part)?;
        if sha256_hex(&part) != parts.sha256[i] {
            return Err(Mismatch(part_mismatch(path, i, parts, size)));
        }
    }
    Ok(())
}

fn read_at(f: &mut fs_err::File, at: u64, buf: &mut [u8]) -> Result<(), Mismatch> {
    f.seek(SeekFrom::Start(at))
        .and_then(|_| f.read_exact(buf))
        .map_err(|e| Mismatch(e.to_string()))
}

/// Where the data stopped matching: the part, its bytes, the file.
fn part_mismatch(path: &Path, i: usize, parts: &PartHashes, size: u64) -> String {
    let start = i as u64 * parts.size;
    let end = (start + parts.size).min(size);
    format!(
        "bytes {start} to {end} (part {} of {}) of {} do not match its manifest",
        i + 1,
        parts.sha256.len(),
        path.display()
    )
}

/// Reads a backup file, checking each part against the manifest before
/// handing any of its bytes on; without parts, hashing the whole.
struct Checked<'a> {
    file: fs_err::File,
    path: &'a Path,
    size: u64,
    parts: Option<&'a PartHashes>,
    part: Vec<u8>,
    at: usize,
    index: usize,
    /// The SHA-256 of the whole file, where there are no parts to check:
    /// with them, every part matching is the whole matching.
    whole: Option<Sha256>,
    read: u64,
    /// The part that did not match, once one did not.
    mismatch: Option<String>,
}

impl<'a> Checked<'a> {
    fn open(path: &'a Path, manifest: Option<&'a Manifest>) -> Result<Checked<'a>, LoadError> {
        let file = fs_err::File::open(path).map_err(|e| LoadError::Failed(e.to_string()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let parts = manifest.and_then(Manifest::parts);
        Ok(Checked {
            file,
            path,
            size,
            parts,
            part: Vec::new(),
            at: 0,
            index: 0,
            whole: parts.is_none().then(Sha256::new),
            read: 0,
            mismatch: None,
        })
    }

    fn next_part(&mut self) -> std::io::Result<()> {
        let want = self.parts.map_or(1 << 20, |p| p.size as usize);
        self.part.resize(want, 0);
        let mut filled = 0;
        while filled < want {
            match self.file.read(&mut self.part[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        self.part.truncate(filled);
        self.at = 0;
        if filled == 0 {
            return Ok(());
        }
        if let Some(whole) = &mut self.whole {
            whole.update(&self.part);
        }
        self.read += filled as u64;
        if let Some(p) = self.parts {
            let i = self.index;
            if p.sha256.get(i).map(String::as_str) != Some(sha256_hex(&self.part).as_str()) {
                let what = part_mismatch(self.path, i, p, self.size.max(self.read));
                self.mismatch = Some(what.clone());
                self.part.clear();
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, what));
            }
        }
        self.index += 1;
        Ok(())
    }
}

impl Read for Checked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.part.len() {
            self.next_part()?;
        }
        let n = buf.len().min(self.part.len() - self.at);
        buf[..n].copy_from_slice(&self.part[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// How the load ended on our side: the dump fed completely, a check of
/// the file that failed, or psql that stopped reading.
enum Fed {
    All { uncompressed: u64, trailer: bool },
    Mismatch(String),
    Psql(std::io::Error),
}

/// Decodes the checked file into psql's input.
fn feed(reader: &mut Checked, to: &mut impl Write) -> Fed {
    let mut gz = MultiGzDecoder::new(reader);
    let mut tail = Tail::default();
    let mut uncompressed = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match gz.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Fed::Mismatch(e.to_string()),
        };
        if let Err(e) = to.write_all(&buf[..n]) {
            return Fed::Psql(e);
        }
        tail.push(&buf[..n]);
        uncompressed += n as u64;
    }
    Fed::All {
        uncompressed,
        trailer: tail.has_trailer(),
    }
}

/// Why a load failed, in the words of the restore's error.
#[derive(Debug)]
pub enum LoadError {
    /// The file stopped matching: nothing was committed.
    Mismatch(String),
    /// psql or the database refused: nothing was committed.
    Failed(String),
}

/// Everything psql was fed matched: the whole file and its manifest, the
/// length of the dump and its trailer.
fn judge(fed: Fed, reader: Checked, manifest: Option<&Manifest>) -> Result<(), LoadError> {
    let name = reader.path.display();
    let (uncompressed, trailer) = match fed {
        Fed::All {
            uncompressed,
            trailer,
        } => (uncompressed, trailer),
        Fed::Mismatch(e) => {
            return Err(LoadError::Mismatch(reader.mismatch.unwrap_or_else(|| {
                format!(
                    "the gzip stream of {name} stopped decoding within its first {} bytes: {e}",
                    reader.read
                )
            })))
        }
        Fed::Psql(e) => return Err(LoadError::Failed(format!("psql stopped reading: {e}"))),
    };
    let mismatch = |what: String| Err(LoadError::Mismatch(what));
    let mut rest = [0u8; 1];
    let mut file = reader.file;
    if file
        .read(&mut rest)
        .map_err(|e| LoadError::Failed(e.to_string()))?
        > 0
    {
        return mismatch(format!(
            "{name} has bytes after its gzip stream, from byte {}",
            reader.read
        ));
    }
    if !trailer {
        return mismatch(format!(
            "{name} does not end with pg_dump's completion trailer; the dump is truncated"
        ));
    }
    let Some(m) = manifest else { return Ok(()) };
    let sha256 = reader.whole.map(|w| hex(&w.finalize()));
    let differs = match reader.parts {
        // Checked in parts: every part matched, which is the whole file
        // matching, and the dump must be as long as pg_dump wrote it.
        Some(p) => reader.index != p.sha256.len() || uncompressed != m.uncompressed_size,
        // Older manifests and hand-made ones: the SHA-256 of the whole
        // file, hashed as it loaded, as before.
        None => sha256.as_deref() != Some(m.sha256.as_str()),
    };
    if reader.read != m.size || differs {
        return mismatch(format!(
            "{name} does not match its manifest (size {} vs {}, sha256 {} vs {}, \
             {uncompressed} vs {} bytes uncompressed)",
            reader.read,
            m.size,
            sha256.as_deref().unwrap_or("checked in parts"),
            m.sha256,
            m.uncompressed_size
        ));
    }
    Ok(())
}

/// Loads the dump at `path` into the database of `conn` in one
/// transaction, after dropping everything the connecting user owns there;
/// commits only when the file matched `manifest` (or, without one, its own
/// gzip stream and trailer) to its last byte.
pub fn load(
    path: &Path,
    manifest: Option<&Manifest>,
    conn: &PgConn,
    run_as: Option<(u32, u32)>,
) -> Result<(), LoadError> {
    let mut reader = Checked::open(path, manifest)?;
    let mut child = spawn_psql(conn, run_as)?;
    let mut stdin = child.stdin.take().expect("piped");
    // psql stays fed while a part is read and checked.
    crate::system::pipes::deepen(&stdin);
    let errors = crate::system::pipes::read_stderr(&mut child);
    // The transaction is ours, not psql's: COMMIT only when all matched.
    let fed = match stdin.write_all(b"BEGIN;\nDROP OWNED BY CURRENT_USER;\n") {
        Ok(()) => feed(&mut reader, &mut stdin),
        Err(e) => Fed::Psql(e),
    };
    let verdict = judge(fed, reader, manifest);
    let committed = verdict.is_ok() && stdin.write_all(b"\nCOMMIT;\n").is_ok();
    // Without a COMMIT, psql ends with the transaction open and the server
    // rolls it back when psql disconnects.
    drop(stdin);
    let status = child
        .wait()
        .map_err(|e| LoadError::Failed(format!("failed to wait for psql: {e}")))?;
    let errors = errors.join().unwrap_or_default();
    match verdict {
        Ok(()) if status.success() && committed => Ok(()),
        Err(LoadError::Mismatch(e)) => Err(LoadError::Mismatch(e)),
        Ok(()) => Err(LoadError::Failed(
            crate::system::text::first_error(&errors)
                .unwrap_or_else(|| format!("psql failed ({status})")),
        )),
        Err(LoadError::Failed(e)) => Err(LoadError::Failed(
            crate::system::text::first_error(&errors).unwrap_or(e),
        )),
    }
}

/// psql as the site's account when given, reading SQL on its input and
/// stopping at the first error.
fn spawn_psql(conn: &PgConn, run_as: Option<(u32, u32)>) -> Result<Child, LoadError> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1"]);
    // The password goes into psql's environment, not its command line.
    conn.apply(&mut cmd)
        .args(["-f", "-"])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid).current_dir("/");
    }
    cmd.spawn()
        .map_err(|e| LoadError::Failed(format!("failed to run psql: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::instep::TRAILER;
    use flate2::write::GzEncoder;
    use proptest::prelude::*;
    use std::path::PathBuf;

    /// A dump ending with pg_dump's trailer, as a gzip file hashed in parts
    /// of `part` bytes, and its manifest.
    fn backup(body: &[u8], part: u64) -> (tempfile::TempDir, PathBuf, Vec<u8>, Manifest) {
        let dump = [body, b"\n", TRAILER, b"\n\n"].concat();
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::new(2));
        gz.write_all(&dump).unwrap();
        let file = gz.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme-20260101T000000Z.sql.gz");
        std::fs::write(&path, &file).unwrap();
        let sha256 = sha256_hex(&file);
        let parts = PartHashes {
            size: part,
            file_sha256: sha256.clone(),
            sha256: file.chunks(part as usize).map(sha256_hex).collect(),
        };
        let m = Manifest {
            parts: Some(parts),
            ..Manifest::for_test(
                "acme-20260101T000000Z.sql.gz",
                file.len() as u64,
                &sha256,
                dump.len() as u64,
            )
        };
        (dir, path, dump, m)
    }

    /// What psql would have read, and the verdict.
    fn load_into_vec(path: &Path, m: &Manifest) -> (Vec<u8>, Result<(), LoadError>) {
        let mut reader = Checked::open(path, Some(m)).unwrap();
        let mut psql = Vec::new();
        let fed = feed(&mut reader, &mut psql);
        (psql, judge(fed, reader, Some(m)))
    }

    fn flip(path: &Path, at: usize, by: u8) {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[at] ^= by;
        std::fs::write(path, bytes).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn an_intact_file_reaches_psql_whole(
            body in proptest::collection::vec(any::<u8>(), 0..12_000),
            part in 64u64..4096,
        ) {
            let (_dir, path, dump, m) = backup(&body, part);
            prop_assert!(precheck(&path, &m, m.parts().unwrap()).is_ok());
            let (psql, verdict) = load_into_vec(&path, &m);
            prop_assert!(verdict.is_ok(), "{verdict:?}");
            prop_assert_eq!(psql, dump);
        }

        #[test]
        fn a_flipped_byte_is_named_by_its_part_and_psql_read_only_checked_bytes(
            body in proptest::collection::vec(any::<u8>(), 1..12_000),
            part in 64u64..4096,
            at in any::<prop::sample::Index>(),
            by in 1u8..=255,
        ) {
            let (_dir, path, dump, m) = backup(&body, part);
            let at = at.index(m.size as usize);
            flip(&path, at, by);
            let (psql, verdict) = load_into_vec(&path, &m);
            let count = m.parts().unwrap().sha256.len();
            let which = format!("(part {} of {count})", at / part as usize + 1);
            match verdict {
                Err(LoadError::Mismatch(why)) => prop_assert!(why.contains(&which), "{why}"),
                other => prop_assert!(false, "{other:?}"),
            }
            // Only bytes of parts that matched were decoded: what psql read
            // is the start of the dump, never a damaged byte.
            prop_assert_eq!(&psql[..], &dump[..psql.len()]);
        }
    }

    #[test]
    fn the_precheck_reads_the_ends_and_leaves_the_middle_to_the_load() {
        let body: Vec<u8> = (0..40_000u32)
            .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
            .collect();
        let (_dir, path, _dump, m) = backup(&body, 1000);
        let parts = m.parts().unwrap().clone();
        let n = parts.sha256.len();
        assert!(n > 4, "{n} parts");
        let intact = std::fs::read(&path).unwrap();
        let check = |m: &Manifest| precheck(&path, m, &parts).map_err(|e| e.0);

        flip(&path, m.size as usize / 2, 0x55);
        assert!(check(&m).is_ok(), "a middle part is the load's to check");
        std::fs::write(&path, &intact).unwrap();
        flip(&path, m.size as usize - 20, 0x55);
        let e = check(&m).unwrap_err();
        assert!(e.contains(&format!("(part {n} of {n})")), "{e}");
        flip(&path, 0, 0x01);
        // The last part is checked after the header; the header first.
        assert!(check(&m)
            .unwrap_err()
            .contains("does not start with a gzip header"));
        std::fs::write(&path, &intact).unwrap();

        let longer = Manifest {
            uncompressed_size: m.uncompressed_size + 1,
            ..m.clone()
        };
        let bigger = Manifest {
            size: m.size + 1,
            ..m.clone()
        };
        for (wrong, says) in [
            (longer, "ends with a length of"),
            (bigger, "but its manifest says"),
        ] {
            let e = check(&wrong).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
        let short = PartHashes {
            sha256: parts.sha256[1..].to_vec(),
            ..parts.clone()
        };
        let e = precheck(&path, &m, &short).unwrap_err().0;
        assert!(e.contains(&format!("({} part hashes)", n - 1)), "{e}");
    }
}
