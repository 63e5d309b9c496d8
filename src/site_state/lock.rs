//! The per-site lock: one deploy, backup or restore of a site at a time.
//!
//! An exclusive `flock` on `/srv/sum/<site>/state/lock`, held for the life of
//! the process (the kernel drops it when the process dies, even by SIGKILL,
//! so a crash never leaves a stale lock). The holder writes who it is into
//! the file so the loser can say exactly who holds it (exit 3).

use std::fs::OpenOptions;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// A held site lock; released on drop.
pub struct SiteLock {
    _lock: Flock<std::fs::File>,
    pub path: PathBuf,
}

/// Why the lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Someone else holds it; the text says who (from the lock file).
    Busy {
        path: PathBuf,
        holder: String,
    },
    Io(std::io::Error),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Busy { path, holder } => write!(
                f,
                "the site is busy: {holder} holds {}; try again when it has finished",
                path.display()
            ),
            LockError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for LockError {}

/// Takes the lock at `path` without waiting, recording `what` (e.g.
/// "sum-backup acme") with the pid and start time as the holder.
pub fn acquire(path: &Path, what: &str, started_utc: &str) -> Result<SiteLock, LockError> {
    let io = |e: std::io::Error, verb: &str| {
        LockError::Io(std::io::Error::new(
            e.kind(),
            format!("failed to {verb} {}: {e}", path.display()),
        ))
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| io(e, "open"))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            let holder = format!("{what} (pid {}, since {started_utc})\n", std::process::id());
            lock.set_len(0).map_err(|e| io(e, "truncate"))?;
            lock.rewind().map_err(|e| io(e, "rewind"))?;
            lock.write_all(holder.as_bytes())
                .map_err(|e| io(e, "write"))?;
            Ok(SiteLock {
                _lock: lock,
                path: path.to_path_buf(),
            })
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            Err(LockError::Busy {
                path: path.to_path_buf(),
                holder: if holder.is_empty() {
                    "another process".into()
                } else {
                    holder.to_string()
                },
            })
        }
        Err((_, errno)) => Err(io(std::io::Error::from(errno), "lock")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_learns_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let held = acquire(&p, "sum-deploy acme", "2026-01-01T00:00:00Z").unwrap();
        match acquire(&p, "sum-backup acme", "2026-01-01T00:00:01Z") {
            Err(LockError::Busy { holder, .. }) => {
                assert!(holder.starts_with("sum-deploy acme (pid "), "{holder}");
                assert!(holder.ends_with("since 2026-01-01T00:00:00Z)"), "{holder}");
            }
            other => panic!("expected Busy, got {:?}", other.map(|l| l.path)),
        }
        drop(held);
        assert!(acquire(&p, "sum-backup acme", "now").is_ok());
    }
}
