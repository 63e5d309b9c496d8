//! The app's own output in the deploy's log. Every line the deploy passes on
//! from the app or its tools (the bridge's gunicorn, `manage.py`, pip) is
//! indented and marked [`MARK`], so that an operator reading
//! `journalctl -u sum-deploy@<site>` tells the app's lines from the
//! deploy's own:
//!
//! ```text
//! ==> check
//!     app| [2026-01-01 00:00:00 +0000] [4242] [INFO] Booting worker with pid: 4243
//!     check: passed, 0 warning(s) (0.31s)
//! ```
//!
//! The bridge's output is relayed as it comes, by a thread that reads its
//! pipe ([`Relay`]): a gunicorn serving requests must not wait for the
//! deploy to get round to its log. What a command that ran to its end
//! printed is quoted from what was captured ([`marked`]): the check's
//! warnings, the tail of a failed command.
//!
//! Journal priority. The app's lines go into the deploy's log, its stdout:
//! under the journal a line there is logged at info, or at warning when it
//! contains `warning:` (see `system::journal`), never at err, whichever of
//! the app's streams it came from. An app's stderr is where gunicorn
//! writes its whole error log (`[INFO] Booting worker …`) and Python its
//! warnings and log records; at err they would fill `journalctl -p err`,
//! where a successful deploy must show nothing. Before the mark, the
//! bridge wrote them into the journal stream itself, at the unit's default
//! level (info), so they stay where they were. The mark in front also
//! means journald never reads an app's line as starting with a `<N>`
//! priority of its own. A failed command's tail is part of the failure's
//! message, which is reported on stderr at err, as it was before.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// What starts each line of the app's output in the log.
pub const MARK: &str = "    app| ";

/// `text` as lines of the log, each starting with [`MARK`]. A line ends at
/// `\n`, `\r\n` or a lone `\r` (a progress bar redrawing itself, which
/// journald would keep inside the entry and then show as a blob); bytes
/// that are not UTF-8 become U+FFFD. Nothing else is changed and nothing
/// is dropped: empty lines stay, and text after the last line end is a
/// line too. Long lines are not cut here: a caller that summarises (the
/// tail of a failed command) does so first.
pub fn marked(text: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(text);
    let mut lines = Vec::new();
    let mut rest: &str = &text;
    while !rest.is_empty() {
        let end = rest.find(['\n', '\r']).unwrap_or(rest.len());
        lines.push(format!("{MARK}{}", &rest[..end]));
        let ending = if rest[end..].starts_with("\r\n") {
            2
        } else {
            usize::from(end < rest.len())
        };
        rest = &rest[end + ending..];
    }
    lines
}

/// The longest line passed on whole; a longer one (a progress bar, a dump)
/// is passed on in pieces of at most this many bytes, each marked, as
/// journald splits its own long lines. Bounds what a relay holds.
pub const LONGEST: usize = 16 * 1024;

/// Output that arrives in pieces, as marked lines once they are complete.
#[derive(Debug, Default)]
pub struct Lines {
    pending: Vec<u8>,
    /// The last piece ended with `\r`: a `\n` that comes next is part of
    /// that line end, not an empty line.
    after_cr: bool,
}

impl Lines {
    /// The lines that `bytes` completes, as [`marked`] gives them.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<String> {
        if bytes.is_empty() {
            return Vec::new();
        }
        if std::mem::take(&mut self.after_cr) {
            bytes = bytes.strip_prefix(b"\n").unwrap_or(bytes);
        }
        self.pending.extend_from_slice(bytes);
        let mut lines = Vec::new();
        if let Some(last) = self
            .pending
            .iter()
            .rposition(|b| matches!(b, b'\n' | b'\r'))
        {
            self.after_cr = self.pending[last] == b'\r' && last + 1 == self.pending.len();
            lines = marked(&self.pending[..=last]);
            self.pending.drain(..=last);
        }
        while self.pending.len() > LONGEST {
            let cut = char_boundary(&self.pending, LONGEST);
            lines.extend(marked(&self.pending[..cut]));
            self.pending.drain(..cut);
        }
        lines
    }

    /// The last line, when the output ended without a line end.
    pub fn finish(self) -> Vec<String> {
        marked(&self.pending)
    }
}

/// A cut at or just before `at` that splits no UTF-8 character (`bytes`
/// is longer than `at`); `at` itself when the bytes there are not UTF-8.
fn char_boundary(bytes: &[u8], at: usize) -> usize {
    (at.saturating_sub(3)..=at)
        .rev()
        .find(|&i| i > 0 && bytes[i] & 0xC0 != 0x80)
        .unwrap_or(at)
}

/// The deploy's log as the steps and a relay share it. Each writes whole
/// lines while it holds the lock, so lines never mix.
pub type Sink<'a> = Arc<Mutex<&'a mut (dyn Write + Send)>>;

/// Writes `lines` into the log, each with its line end, and flushes: the
/// log is read as it is written (`journalctl -f`).
pub fn write_lines<S: AsRef<str>>(log: &Sink, lines: &[S]) {
    if lines.is_empty() {
        return;
    }
    let mut guard = log.lock().unwrap_or_else(PoisonError::into_inner);
    let out: &mut dyn Write = &mut **guard;
    for line in lines {
        let _ = writeln!(out, "{}", line.as_ref());
    }
    let _ = out.flush();
}

/// How long output may still come once the relay is told to finish:
/// processes of the app that outlive the bridge (a worker it did not stop,
/// something the app started) keep the pipe open.
const LAST_WORDS: Duration = Duration::from_secs(2);

/// A thread passing what is written into a pipe into the log, marked, as
/// it comes. It ends at the pipe's end, or soon after [`Relay::finish`]
/// (or a drop).
pub struct Relay<'scope> {
    finishing: Arc<AtomicBool>,
    thread: Option<ScopedJoinHandle<'scope, ()>>,
}

impl<'scope> Relay<'scope> {
    /// Starts relaying into `log`; what is written into the returned fd
    /// (a child's stdout and stderr) is passed on. The thread belongs to
    /// `scope`, as the log does.
    pub fn start<'a: 'scope>(
        scope: &'scope Scope<'scope, '_>,
        log: Sink<'a>,
    ) -> std::io::Result<(Relay<'scope>, OwnedFd)> {
        // Close-on-exec: only the child it is given to gets the write end
        // (as its stdout and stderr); no other child keeps the pipe open.
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let finishing = Arc::new(AtomicBool::new(false));
        let told = Arc::clone(&finishing);
        let thread = std::thread::Builder::new()
            .name("app-output".into())
            .spawn_scoped(scope, move || pass_on(read, &log, &told))?;
        Ok((
            Relay {
                finishing,
                thread: Some(thread),
            },
            write,
        ))
    }

    /// Once the writers are gone: passes on what is left, then ends.
    pub fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.finishing.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Relay<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

/// The relay's thread: reads the pipe until its end, or until it has been
/// told to finish and nothing more comes (at most [`LAST_WORDS`] later);
/// then the last line, if it had no line end.
fn pass_on(from: OwnedFd, log: &Sink, finishing: &AtomicBool) {
    // A pipe has no path: std's `File`, as fs_err's names one.
    let mut pipe = std::fs::File::from(from);
    let mut lines = Lines::default();
    let mut buf = vec![0; 64 * 1024];
    let mut deadline = None;
    loop {
        let told = finishing.load(Ordering::Relaxed);
        if told && *deadline.get_or_insert_with(|| Instant::now() + LAST_WORDS) < Instant::now() {
            break;
        }
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) if told => break,
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => break,
        }
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => write_lines(log, &lines.push(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    write_lines(log, &lines.finish());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the marked lines say without their mark.
    fn content(lines: &[String]) -> Vec<&str> {
        lines
            .iter()
            .map(|l| l.strip_prefix(MARK).expect("a line without the mark"))
            .collect()
    }

    #[test]
    fn every_line_is_marked_and_kept() {
        let out = marked(b"one\r\n\ntwo\rthree\n  four\t\n\xffend");
        assert_eq!(
            content(&out),
            ["one", "", "two", "three", "  four\t", "\u{fffd}end"]
        );
        assert_eq!(out[0], "    app| one");
        assert_eq!(marked(b""), Vec::<String>::new());
        assert_eq!(content(&marked(b"\n")), [""]);
        assert_eq!(content(&marked(b"a\r")), ["a"]);
        assert_eq!(content(&marked(b"a\r\r\n")), ["a", ""]);
    }

    #[test]
    fn lines_that_arrive_in_pieces_are_passed_on_once_complete() {
        let mut lines = Lines::default();
        assert!(lines.push(b"[INFO] Boot").is_empty());
        assert_eq!(content(&lines.push(b"ing\r")), ["[INFO] Booting"]);
        // The \n of that \r\n: no empty line.
        assert!(lines.push(b"\n").is_empty());
        assert_eq!(content(&lines.push(b"\nx\ny")), ["", "x"]);
        assert_eq!(content(&lines.finish()), ["y"]);
    }

    #[test]
    fn a_long_line_is_passed_on_in_whole_characters() {
        let long = "é".repeat(LONGEST);
        let mut lines = Lines::default();
        let mut out = lines.push(long.as_bytes());
        out.extend(lines.push(b"\n"));
        out.extend(lines.finish());
        assert!(out.len() > 1, "{} pieces", out.len());
        let pieces = content(&out);
        assert!(pieces
            .iter()
            .all(|p| p.len() <= LONGEST && !p.contains('\u{fffd}')));
        assert_eq!(pieces.concat(), long);
    }

    #[test]
    fn a_relay_passes_on_everything_then_ends() {
        let mut out = Vec::new();
        {
            let log: Sink = Arc::new(Mutex::new(&mut out));
            std::thread::scope(|scope| {
                let (relay, write) = Relay::start(scope, Arc::clone(&log)).unwrap();
                let mut w = std::fs::File::from(write);
                w.write_all(b"first\nsecond").unwrap();
                write_lines(&log, &["    ours"]);
                drop(w);
                relay.finish();
            });
        }
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("    app| first\n"), "{text}");
        assert!(text.ends_with("    app| second\n"), "{text}");
        assert!(text.contains("    ours\n"), "{text}");
    }

    #[test]
    fn a_relay_told_to_finish_does_not_wait_for_a_pipe_left_open() {
        let mut out = Vec::new();
        let log: Sink = Arc::new(Mutex::new(&mut out));
        std::thread::scope(|scope| {
            let (relay, write) = Relay::start(scope, log).unwrap();
            let t = Instant::now();
            relay.finish();
            assert!(t.elapsed() < LAST_WORDS, "{:?}", t.elapsed());
            drop(write);
        });
    }

    #[test]
    fn under_the_journal_the_apps_lines_are_never_errors() {
        let mut journal = Vec::new();
        {
            // The deploy's log under systemd: its stdout, the journal.
            let mut stdout = crate::system::journal::Prioritized::new(&mut journal, true, false);
            let log: Sink = Arc::new(Mutex::new(&mut stdout));
            let said = b"<3>an app's own priority\n[ERROR] gunicorn's error log\nwarning: y\n";
            write_lines(&log, &marked(said));
        }
        let text = String::from_utf8(journal).unwrap();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "    app| <3>an app's own priority",
                "    app| [ERROR] gunicorn's error log",
                "<4>    app| warning: y",
            ]
        );
    }

    /// One line of generated output: text without line ends (any bytes),
    /// and how it ends.
    fn line() -> impl Strategy<Value = (Vec<u8>, &'static [u8])> {
        let text = proptest::collection::vec(
            any::<u8>().prop_filter("no line end", |b| !matches!(b, b'\n' | b'\r')),
            0..40,
        );
        let ends: [&'static [u8]; 3] = [b"\n", b"\r\n", b"\r"];
        let end = proptest::sample::select(ends.to_vec());
        (text, end)
    }

    proptest! {
        #[test]
        fn any_output_comes_back_line_by_line_behind_the_mark(
            lines in proptest::collection::vec(line(), 0..12),
            last in proptest::collection::vec(any::<u8>(), 0..20),
            ended in any::<bool>(),
        ) {
            let mut text = Vec::new();
            let mut want = Vec::new();
            for (l, end) in &lines {
                // After a `\r`, an empty line ended by `\n` would make a
                // `\r\n`: it ends with `\r\n` itself.
                let end = if l.is_empty() && text.ends_with(b"\r") && *end == b"\n" {
                    b"\r\n"
                } else {
                    *end
                };
                text.extend_from_slice(l);
                text.extend_from_slice(end);
                want.push(String::from_utf8_lossy(l).into_owned());
            }
            // A last line that may have no line end.
            let last: Vec<u8> = last.into_iter().filter(|b| !matches!(b, b'\n' | b'\r')).collect();
            if !last.is_empty() {
                text.extend_from_slice(&last);
                want.push(String::from_utf8_lossy(&last).into_owned());
                if ended {
                    text.push(b'\n');
                }
            }
            let out = marked(&text);
            prop_assert_eq!(content(&out), want);
        }

        #[test]
        fn any_bytes_are_marked_without_loss(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let out = marked(&bytes);
            prop_assert!(out.iter().all(|l| l.starts_with(MARK) && !l.contains(['\n', '\r'])));
            // The content is the text with its line ends made `\n`.
            let text = String::from_utf8_lossy(&bytes).replace("\r\n", "\n").replace('\r', "\n");
            let text = text.strip_suffix('\n').unwrap_or(&text);
            prop_assert_eq!(content(&out).join("\n"), text);
        }

        #[test]
        fn pieces_give_the_lines_the_whole_gives(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            cuts in proptest::collection::vec(0usize..512, 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut lines = Lines::default();
            let mut out = Vec::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                out.extend(lines.push(&bytes[from..cut]));
                from = cut;
            }
            out.extend(lines.finish());
            prop_assert_eq!(out, marked(&bytes));
        }
    }
}
