//! Journal priorities for what our binaries print (SPEC §11): under
//! systemd, a line that starts with `<3>` is logged at priority err and one
//! with `<4>` at warning (sd-daemon(3), `SyslogLevelPrefix=` is on by
//! default), so `journalctl -p err -u 'sum-*'` finds every failure.
//!
//! The prefix is added only when the stream really is the journal: systemd
//! sets `JOURNAL_STREAM=<device>:<inode>` for a service whose stdout or
//! stderr is connected to it, and the stream's own device and inode must
//! match. On a terminal or a pipe nothing changes.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Whether `fd` is the journal stream systemd connected us to.
pub fn is_journal(fd: BorrowedFd<'_>) -> bool {
    let stream = std::env::var_os("JOURNAL_STREAM");
    matches_stream(
        fd,
        stream.as_deref().map(|s| s.to_string_lossy()).as_deref(),
    )
}

/// Whether `fd`'s device and inode are those of `JOURNAL_STREAM`'s value.
fn matches_stream(fd: BorrowedFd<'_>, stream: Option<&str>) -> bool {
    let Some((dev, ino)) = stream.and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    nix::sys::stat::fstat(fd.as_raw_fd()).is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

/// The priority a line is logged at: warnings at warning, the rest of an
/// error stream at err, the rest of an ordinary stream unprefixed.
fn priority(line: &[u8], errors: bool) -> Option<&'static [u8]> {
    let text = String::from_utf8_lossy(line);
    if text.contains("warning:") {
        Some(b"<4>")
    } else if errors {
        Some(b"<3>")
    } else {
        None
    }
}

/// A writer that prefixes each line with its journal priority when the
/// stream is the journal, and passes bytes through unchanged otherwise.
pub struct Prioritized<W: Write> {
    inner: W,
    journal: bool,
    errors: bool,
    line: Vec<u8>,
}

impl<W: Write> Prioritized<W> {
    /// `errors`: every line of this stream reports a failure (stderr).
    pub fn new(inner: W, journal: bool, errors: bool) -> Prioritized<W> {
        Prioritized {
            inner,
            journal,
            errors,
            line: Vec::new(),
        }
    }

    fn emit_line(&mut self) -> std::io::Result<()> {
        if self.line.is_empty() {
            return Ok(());
        }
        if let Some(p) = priority(&self.line, self.errors) {
            self.inner.write_all(p)?;
        }
        self.inner.write_all(&self.line)?;
        self.line.clear();
        Ok(())
    }
}

impl<W: Write> Write for Prioritized<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.journal {
            return self.inner.write(buf);
        }
        for chunk in buf.split_inclusive(|b| *b == b'\n') {
            self.line.extend_from_slice(chunk);
            if chunk.ends_with(b"\n") {
                self.emit_line()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Drop for Prioritized<W> {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.line.push(b'\n');
            let _ = self.emit_line();
        }
        let _ = self.inner.flush();
    }
}

/// Our stdout: warnings at warning under the journal.
pub fn stdout() -> Prioritized<std::io::Stdout> {
    let out = std::io::stdout();
    let journal = is_journal(out.as_fd());
    Prioritized::new(out, journal, false)
}

/// Our stderr: errors at err, warnings at warning, under the journal.
pub fn stderr() -> Prioritized<std::io::Stderr> {
    let err = std::io::stderr();
    let journal = is_journal(err.as_fd());
    Prioritized::new(err, journal, true)
}

/// Reports a panic at priority err under the journal, as one line a
/// `journalctl -p err` shows, then as the default hook would.
pub fn log_panics_as_errors() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if is_journal(std::io::stderr().as_fd()) {
            let mut err = stderr();
            let _ = writeln!(err, "{}", info.to_string().replace('\n', " "));
        } else {
            default(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn through(journal: bool, errors: bool, writes: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut w = Prioritized::new(&mut out, journal, errors);
            for b in writes {
                w.write_all(b).unwrap();
            }
        }
        out
    }

    #[test]
    fn prefixes_each_line_under_the_journal_only() {
        let lines: &[&[u8]] = &[
            b"sum-deploy acme: smoke failed\nlast lines:\n",
            b"warning: x\n",
        ];
        assert_eq!(
            through(true, true, lines),
            b"<3>sum-deploy acme: smoke failed\n<3>last lines:\n<4>warning: x\n"
        );
        assert_eq!(
            through(
                true,
                false,
                &[b"==> fetch\n    fetch: ok\n", b"warning: pruning"]
            ),
            b"==> fetch\n    fetch: ok\n<4>warning: pruning\n"
        );
        assert_eq!(through(false, true, lines), lines.concat());
    }

    #[test]
    fn a_line_split_across_writes_gets_one_prefix() {
        assert_eq!(
            through(true, true, &[b"sum-backup a", b"cme: failed", b"\n"]),
            b"<3>sum-backup acme: failed\n"
        );
    }

    #[test]
    fn the_journal_is_the_stream_with_the_named_device_and_inode() {
        let f = tempfile::tempfile().unwrap();
        let st = nix::sys::stat::fstat(f.as_raw_fd()).unwrap();
        let own = format!("{}:{}", st.st_dev, st.st_ino);
        assert!(matches_stream(f.as_fd(), Some(&own)));
        let other = format!("{}:{}", st.st_dev, st.st_ino + 1);
        assert!(!matches_stream(f.as_fd(), Some(&other)));
        for bad in [None, Some(""), Some("x:y"), Some("12")] {
            assert!(!matches_stream(f.as_fd(), bad), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn keeps_every_byte_and_prefixes_each_line(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)
        ) {
            let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let plain = through(false, true, &refs);
            prop_assert_eq!(&plain, &chunks.concat());
            let marked = through(true, true, &refs);
            let mut stripped = Vec::new();
            for line in marked.split_inclusive(|b| *b == b'\n') {
                let rest = line
                    .strip_prefix(b"<3>".as_slice())
                    .or_else(|| line.strip_prefix(b"<4>".as_slice()));
                prop_assert!(rest.is_some(), "a line without a priority");
                stripped.extend_from_slice(rest.unwrap());
            }
            let mut expected = chunks.concat();
            if !expected.is_empty() && !expected.ends_with(b"\n") {
                expected.push(b'\n');
            }
            prop_assert_eq!(stripped, expected);
        }
    }
}
