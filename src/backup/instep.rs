//! A backup file verified while it is written, not after (docs/backups.md,
//! "What makes a backup count").
//!
//! The gzip stream goes to the `.partial` file through a [`Sink`] that
//! hashes it whole and in parts ([`crate::backup::hashio::Parts`]) and
//! hands a copy of every compressed byte to a [`Checker`] thread. The
//! checker decodes the stream in step, on the second core: the stream must
//! end, its CRC-32 and length must match what gzip recorded, it must give
//! exactly the bytes pg_dump wrote (their count) and end with pg_dump's
//! trailer. After the fsync, [`reread`] drops the file from the page cache
//! and reads it back from the storage: its size and SHA-256 must be the
//! ones computed while writing. Nothing is decompressed twice.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use crate::backup::hashio::{Hashing, Parts};

/// The last line pg_dump writes to a complete plain-format dump.
pub const TRAILER: &[u8] = b"-- PostgreSQL database dump complete";

/// Keeps the last bytes of a stream, to find pg_dump's trailer.
#[derive(Default)]
pub struct Tail(Vec<u8>);

impl Tail {
    pub fn push(&mut self, data: &[u8]) {
        if data.len() >= 256 {
            self.0.clear();
            self.0.extend_from_slice(&data[data.len() - 256..]);
            return;
        }
        self.0.extend_from_slice(data);
        let excess = self.0.len().saturating_sub(256);
        self.0.drain(..excess);
    }
    pub fn has_trailer(&self) -> bool {
        self.0.windows(TRAILER.len()).any(|w| w == TRAILER)
    }
}

/// What decoding the written stream gave: its length, and whether it ends
/// with pg_dump's trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub uncompressed: u64,
    pub trailer: bool,
}

/// Counts and keeps the tail of what the checker decodes.
#[derive(Default)]
struct Seen {
    count: u64,
    tail: Tail,
}

impl Write for Seen {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.count += buf.len() as u64;
        self.tail.push(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The thread that decodes the compressed stream as it is written.
pub struct Checker {
    feed: Option<SyncSender<Vec<u8>>>,
    thread: Option<JoinHandle<Result<Decoded, String>>>,
}

impl Checker {
    pub fn start() -> Checker {
        // A few buffers of compressed output in flight: the writer never
        // waits for the checker unless the checker falls behind.
        let (feed, rx) = sync_channel::<Vec<u8>>(16);
        let thread = std::thread::spawn(move || {
            let mut gz = flate2::write::GzDecoder::new(Seen::default());
            let mut failed = None;
            for buf in rx {
                if failed.is_none() {
                    failed = gz.write_all(&buf).err();
                }
            }
            if let Some(e) = failed {
                return Err(format!("the written gzip stream does not decode: {e}"));
            }
            let seen = gz
                .finish()
                .map_err(|e| format!("the written gzip stream does not end correctly: {e}"))?;
            Ok(Decoded {
                uncompressed: seen.count,
                trailer: seen.tail.has_trailer(),
            })
        });
        Checker {
            feed: Some(feed),
            thread: Some(thread),
        }
    }

    fn send(&self, data: &[u8]) {
        if let Some(feed) = &self.feed {
            // A checker that stopped has its error waiting in `finish`.
            let _ = feed.send(data.to_vec());
        }
    }

    /// Ends the stream and waits for the checker's verdict.
    pub fn finish(mut self) -> Result<Decoded, String> {
        self.feed = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err("the stream checker stopped unexpectedly".to_string()),
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.feed = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Where the compressed stream goes: the file (hashed whole and counted
/// on the way), the part hashes, the checker.
pub struct Sink {
    file: Hashing<BufWriter<File>>,
    parts: Parts,
    checker: Checker,
}

/// What was written: the size, the SHA-256 of the whole file and of each
/// part, and the file (flushed, not yet fsynced).
pub struct Written {
    pub size: u64,
    pub sha256: String,
    pub parts: Vec<String>,
    pub file: File,
    pub checker: Checker,
}

impl Sink {
    pub fn new(file: File) -> Sink {
        Sink {
            file: Hashing::new(BufWriter::with_capacity(1 << 20, file)),
            parts: Parts::new(),
            checker: Checker::start(),
        }
    }

    pub fn finish(self) -> std::io::Result<Written> {
        let (sha256, size, buffered) = self.file.finish();
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        Ok(Written {
            size,
            sha256,
            parts: self.parts.finish(),
            file,
            checker: self.checker,
        })
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        let done = &buf[..n];
        self.parts.update(done);
        self.checker.send(done);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Reads a written, fsynced file back from the storage: its size and
/// SHA-256. The file's cached pages are dropped first, so that the bytes
/// come from the disk, not from the memory they were written from (where
/// the kernel keeps them dirty, it keeps them; `posix_fadvise` is advice).
pub fn reread(file: &File, path: &Path) -> std::io::Result<(u64, String)> {
    let _ = nix::fcntl::posix_fadvise(
        file.as_raw_fd(),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    let (sha256, size) = crate::backup::hashio::hash_file(path)?;
    Ok((size, sha256))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use proptest::prelude::*;

    fn written(data: &[u8], mangle: impl Fn(&mut Vec<u8>)) -> Result<Decoded, String> {
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::new(3));
        gz.write_all(data).unwrap();
        let mut bytes = gz.finish().unwrap();
        mangle(&mut bytes);
        let checker = Checker::start();
        for c in bytes.chunks(1000) {
            checker.send(c);
        }
        checker.finish()
    }

    #[test]
    fn a_complete_dump_decodes_with_its_length_and_trailer() {
        let dump = [&b"CREATE TABLE t (x int);\n"[..], TRAILER, b"\n\n"].concat();
        assert_eq!(
            written(&dump, |_| {}),
            Ok(Decoded {
                uncompressed: dump.len() as u64,
                trailer: true
            })
        );
        let cut = &dump[..dump.len() - 20];
        assert_eq!(written(cut, |_| {}).map(|d| d.trailer), Ok(false));
    }

    #[test]
    fn a_damaged_or_cut_stream_is_an_error() {
        let dump: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("{i}\trow {}\n", i * 7).into_bytes())
            .collect();
        // A flipped byte in the CRC-32 at the end.
        let e = written(&dump, |b| {
            let n = b.len() - 6;
            b[n] ^= 1;
        })
        .unwrap_err();
        assert!(e.contains("does not end correctly"), "{e}");
        // Cut short.
        let e = written(&dump, |b| b.truncate(b.len() / 2)).unwrap_err();
        assert!(e.contains("gzip stream"), "{e}");
        // Bytes after the stream.
        assert!(written(&dump, |b| b.extend_from_slice(b"junk")).is_err());
    }

    proptest! {
        #[test]
        fn the_tail_is_the_last_bytes_however_they_arrive(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(0usize..600, 0..10),
        ) {
            let mut tail = Tail::default();
            let mut at = 0;
            for c in cuts {
                let end = (at + c).min(data.len());
                tail.push(&data[at..end]);
                at = end;
            }
            tail.push(&data[at..]);
            let keep = data.len().min(256);
            prop_assert_eq!(&tail.0[..], &data[data.len() - keep..]);
        }
    }
}
