//! The pipes to and from a child process: its stderr read whole on a
//! thread of its own, and a deeper pipe where one side runs in bursts.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::Child;
use std::thread::JoinHandle;

/// Reads the child's stderr to the end on a thread of its own, as bytes
/// decoded lossily: PostgreSQL's tools quote names and data in the
/// server's encoding, and `read_to_string` would drop everything on one
/// invalid byte.
pub fn read_stderr(child: &mut Child) -> JoinHandle<String> {
    let mut stderr = child.stderr.take().expect("stderr piped");
    std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        String::from_utf8_lossy(&b).into_owned()
    })
}

/// Gives a pipe 1 MiB of buffer (the default limit for any user) instead
/// of 64 KiB, so that the side that runs steadily (pg_dump, psql) goes on
/// while the other works on a piece. Where the kernel refuses, the pipe
/// stays as it was: it is only slower.
pub fn deepen(pipe: &impl AsRawFd) {
    let _ = nix::fcntl::fcntl(
        pipe.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20),
    );
}
