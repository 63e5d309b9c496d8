//! A reader or writer that counts and SHA-256-hashes the bytes passing
//! through: what backups record when writing and check when re-reading.

use std::io::{Read, Write};

use sha2::{Digest, Sha256};

pub struct Hashing<T> {
    pub inner: T,
    hasher: Sha256,
    /// Bytes that passed through so far.
    pub count: u64,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The hex SHA-256 of everything that passed through, and the inner value.
    pub fn finish(self) -> (String, u64, T) {
        (hex(&self.hasher.finalize()), self.count, self.inner)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// The size of the parts a backup file is hashed in, besides the whole
/// file: a restore checks each part against the manifest before any byte
/// of it reaches psql (docs/backups.md, "Restore").
pub const PART_SIZE: u64 = 1 << 20;

/// SHA-256 of every [`PART_SIZE`] bytes of a stream, the last part shorter.
pub struct Parts {
    current: Sha256,
    filled: u64,
    hashes: Vec<String>,
}

impl Default for Parts {
    fn default() -> Self {
        Self::new()
    }
}

impl Parts {
    pub fn new() -> Self {
        Parts {
            current: Sha256::new(),
            filled: 0,
            hashes: Vec::new(),
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = usize::try_from(PART_SIZE - self.filled).unwrap_or(usize::MAX);
            let (now, rest) = data.split_at(data.len().min(room));
            self.current.update(now);
            self.filled += now.len() as u64;
            data = rest;
            if self.filled == PART_SIZE {
                self.close();
            }
        }
    }

    fn close(&mut self) {
        let done = std::mem::replace(&mut self.current, Sha256::new());
        self.hashes.push(hex(&done.finalize()));
        self.filled = 0;
    }

    /// The hex SHA-256 of each part, in order.
    pub fn finish(mut self) -> Vec<String> {
        if self.filled > 0 {
            self.close();
        }
        self.hashes
    }
}

/// Lower-case hex of a digest.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hex SHA-256 and the size of the file at `path`, read to its end.
pub fn hash_file(path: &std::path::Path) -> std::io::Result<(String, u64)> {
    let file = fs_err::File::open(path)?;
    let mut hashing = Hashing::new(std::io::BufReader::with_capacity(1 << 20, file));
    std::io::copy(&mut hashing, &mut std::io::sink())?;
    let (sha256, size, _) = hashing.finish();
    Ok((sha256, size))
}

/// The hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Megabytes per case: a few cases cover the boundaries.
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn parts_are_the_hashes_of_each_slice_however_the_bytes_arrive(
            len in 0usize..(3 * PART_SIZE as usize + 100),
            cuts in proptest::collection::vec(1usize..300_000, 0..20),
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut parts = Parts::new();
            let mut at = 0;
            for c in cuts {
                let end = (at + c).min(len);
                parts.update(&data[at..end]);
                at = end;
            }
            parts.update(&data[at..]);
            let want: Vec<String> = data.chunks(PART_SIZE as usize).map(sha256_hex).collect();
            prop_assert_eq!(parts.finish(), want);
        }
    }
}
