//! rclone, Debian's, with the package's configuration
//! (`/etc/sum/rclone.conf`): how it is run and what its output says.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::config::layout::{Root, RCLONE_CONF};

/// rclone with the package's configuration.
pub struct Rclone {
    config: PathBuf,
}

impl Rclone {
    pub fn new(root: &Root) -> Rclone {
        Rclone {
            config: root.path(RCLONE_CONF),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("rclone");
        cmd.arg("--config")
            .arg(&self.config)
            .args(["--contimeout", "15s", "--timeout", "60s"])
            .args(["--retries", "2", "--low-level-retries", "3"])
            .stdin(Stdio::null())
            .env_remove("RCLONE_CONFIG");
        cmd
    }

    /// Runs rclone; its stdout, or its exit status and last stderr lines.
    pub(crate) fn run(&self, args: &[&str]) -> Result<(Vec<u8>, String), Failed> {
        let out = self.command().args(args).output().map_err(|e| Failed {
            code: None,
            message: format!("failed to run rclone (apt install rclone): {e}"),
        })?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            return Ok((out.stdout, stderr));
        }
        Err(Failed {
            code: out.status.code(),
            message: format!(
                "rclone {} failed ({}):\n{}",
                args.first().unwrap_or(&""),
                out.status,
                crate::system::text::last_lines(&failure_lines(&stderr), 6, 300)
            ),
        })
    }

    /// `rclone listremotes --long`: each remote's name and type.
    pub fn remotes(&self) -> Result<BTreeMap<String, String>, String> {
        let (out, _) = self
            .run(&["listremotes", "--long"])
            .map_err(|f| f.message)?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(name, kind)| (name.trim().to_string(), kind.trim().to_string()))
            .collect())
    }

    /// Names and sizes of the files in `dir`; none when it does not exist
    /// yet.
    pub fn list(&self, dir: &str) -> Result<BTreeMap<String, u64>, String> {
        #[derive(Deserialize)]
        struct Entry {
            #[serde(rename = "Name")]
            name: String,
            #[serde(rename = "Size")]
            size: i64,
        }
        match self.run(&["lsjson", "--files-only", "--no-mimetype", dir]) {
            Ok((out, _)) => {
                let entries: Vec<Entry> = serde_json::from_slice(&out)
                    .map_err(|e| format!("rclone lsjson {dir}: unexpected output: {e}"))?;
                Ok(entries
                    .into_iter()
                    .map(|e| (e.name, e.size.max(0) as u64))
                    .collect())
            }
            Err(f) if f.code == Some(3) => Ok(BTreeMap::new()),
            Err(f) => Err(f.message),
        }
    }
}

/// A failed rclone run: its exit status (3 is "directory not found").
pub(crate) struct Failed {
    pub(crate) code: Option<i32>,
    pub(crate) message: String,
}

/// A list of names for rclone's `--files-from`.
pub(crate) fn name_list(names: &[String]) -> Result<tempfile::NamedTempFile, String> {
    let mut f = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    for n in names {
        writeln!(f, "{n}").map_err(|e| e.to_string())?;
    }
    f.flush().map_err(|e| e.to_string())?;
    Ok(f)
}

/// What says why an rclone run failed, from its log: without the DEBUG
/// and INFO lines that `-v` and `-vv` add, without the statistics block
/// (`Transferred:`, `Errors:`, …) that would push the reason out of the
/// last lines, and each message once (rclone repeats it on each retry).
/// All of the log when nothing else is left.
fn failure_lines(log: &str) -> String {
    const STATS: [&str; 10] = [
        "Transferred:",
        "Errors:",
        "Checks:",
        "Deleted:",
        "Renamed:",
        "Elapsed time:",
        "Transferring:",
        "Checking:",
        "Server Side",
        "* ",
    ];
    let mut seen = std::collections::BTreeSet::new();
    let kept: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains(" DEBUG : ") && !l.contains(" INFO  : "))
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !STATS.iter().any(|p| l.trim_start().starts_with(p)))
        .filter(|l| seen.insert(message_of(l)))
        .collect();
    if kept.is_empty() {
        log.to_string()
    } else {
        kept.join("\n")
    }
}

/// A log line as its message, to tell repeats: without the time
/// (`2026/12/05 18:42:28 `), and an `Attempt 2/3 failed with …` as what
/// it failed with.
fn message_of(line: &str) -> &str {
    let b = line.as_bytes();
    let timed = b.len() >= 20 && b[4] == b'/' && b[7] == b'/' && b[10] == b' ' && b[19] == b' ';
    let text = if timed { &line[20..] } else { line };
    match (text.find("Attempt "), text.find(" failed with ")) {
        (Some(a), Some(f)) if a < f => &text[f..],
        _ => text,
    }
}

/// The files whose hash rclone compared on both sides after transferring
/// them, and which hash: from the `-vv` log of a copy, its debug line
/// `<time> DEBUG : <name>: <hash> = <hex> OK` (rclone fails the transfer
/// as "corrupted on transfer" when they differ). A file the log does not
/// name so was not compared: no hash in common, or not transferred.
pub fn hash_checked_on_transfer(log: &str) -> BTreeMap<String, String> {
    let mut checked = BTreeMap::new();
    for line in log.lines() {
        let Some((_, rest)) = line.split_once(" DEBUG : ") else {
            continue;
        };
        let Some(rest) = rest.strip_suffix(" OK") else {
            continue;
        };
        // The name may hold ": ", the hash part does not.
        let Some((name, sum)) = rest.rsplit_once(": ") else {
            continue;
        };
        let Some((hash, hex)) = sum.split_once(" = ") else {
            continue;
        };
        let word = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric());
        if word(hash) && word(hex) && !name.is_empty() {
            checked.insert(name.to_string(), hash.to_string());
        }
    }
    checked
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The log of a real `rclone copy -vv` (rclone 1.60, local to local).
    const COPY_LOG: &str = "\
2026/12/05 15:20:06 DEBUG : rclone: Version \"v1.60.1-DEV\" starting with parameters [\"rclone\" \"copy\" \"-vv\"]
2026/12/05 15:20:06 DEBUG : Creating backend with remote \"rt/src\"
2026/12/05 15:20:06 DEBUG : m.json: md5 = 401b30e3b8b5d629635a5c613cdb7919 OK
2026/12/05 15:20:06 INFO  : m.json: Copied (new)
2026/12/05 15:20:06 DEBUG : Local file system at /tmp/rt/dst: Waiting for checks to finish
2026/12/05 15:20:06 DEBUG : a b.sql.gz: md5 = ab69df98f3ebfb6b031ef53f906ce1d9 OK
2026/12/05 15:20:06 INFO  : a b.sql.gz: Copied (new)
2026/12/05 15:20:06 INFO  : 
Transferred:   \t   97.658 KiB / 97.658 KiB, 100%, 0 B/s, ETA -
2026/12/05 15:20:06 DEBUG : 3 go routines active
";

    #[test]
    fn a_real_copy_log_names_each_file_and_its_hash() {
        let checked = hash_checked_on_transfer(COPY_LOG);
        let want: BTreeMap<String, String> = [("a b.sql.gz", "md5"), ("m.json", "md5")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(checked, want);
    }

    #[test]
    fn failure_lines_drop_the_chatter_but_never_everything() {
        let log = "2026/12/05 15:20:06 DEBUG : x\n2026/12/05 15:20:06 ERROR : a: failed\n\
                   2026/12/05 15:20:06 INFO  : y\n";
        assert_eq!(failure_lines(log), "2026/12/05 15:20:06 ERROR : a: failed");
        let chatter = "2026/12/05 15:20:06 DEBUG : x\n";
        assert_eq!(failure_lines(chatter), chatter);
    }

    /// rclone 1.60's log of a copy to a full disk, with `-vv` and a retry:
    /// the reason survives, once, and the statistics go.
    #[test]
    fn failure_lines_keep_the_reason_of_a_full_disk_once() {
        let log = "2026/12/05 18:42:28 INFO  : b: Copied (new)
2026/12/05 18:42:28 ERROR : a: Failed to copy: preallocate: file too big for remaining disk space
2026/12/05 18:42:28 ERROR : Attempt 1/2 failed with 1 errors and: preallocate: file too big for remaining disk space
2026/12/05 18:42:29 ERROR : a: Failed to copy: preallocate: file too big for remaining disk space
2026/12/05 18:42:29 ERROR : Attempt 2/2 failed with 1 errors and: preallocate: file too big for remaining disk space
2026/12/05 18:42:29 INFO  : 
Transferred:   	       10 KiB / 10 KiB, 100%, 0 B/s, ETA -
Errors:                 1 (retrying may help)
Transferred:            1 / 1, 100%
Elapsed time:         0.0s

2026/12/05 18:42:29 Failed to copy: preallocate: file too big for remaining disk space
";
        let kept = failure_lines(log);
        assert_eq!(
            kept.lines().collect::<Vec<_>>(),
            [
                "2026/12/05 18:42:28 ERROR : a: Failed to copy: preallocate: file too big for remaining disk space",
                "2026/12/05 18:42:28 ERROR : Attempt 1/2 failed with 1 errors and: preallocate: file too big for remaining disk space",
                "2026/12/05 18:42:29 Failed to copy: preallocate: file too big for remaining disk space",
            ]
        );
    }

    proptest! {
        #[test]
        fn any_log_is_read_without_panic(log in "\\PC*(\n\\PC*){0,5}") {
            let _ = hash_checked_on_transfer(&log);
            let _ = failure_lines(&log);
        }

        #[test]
        fn a_checked_line_is_found_whatever_the_name(
            name in "[^\n\r]{1,40}",
            hash in "(md5|sha1|crc32|whirlpool)",
            hex in "[0-9a-f]{8,64}",
            noise in "[^\n]{0,60}",
        ) {
            let name = name.trim().to_string();
            prop_assume!(!name.is_empty());
            let log = format!(
                "{noise}\n2026/12/05 15:20:06 DEBUG : {name}: {hash} = {hex} OK\n\
                 2026/12/05 15:20:06 INFO  : {name}: Copied (new)\n"
            );
            let checked = hash_checked_on_transfer(&log);
            prop_assert_eq!(checked.get(&name), Some(&hash));
        }

        #[test]
        fn a_transfer_without_its_ok_line_is_not_counted(
            name in "[a-z0-9.-]{1,30}",
            status in "(MISMATCH|ERROR|differ|)",
        ) {
            let log = format!(
                "2026/12/05 15:20:06 DEBUG : {name}: md5 = 0123abcd {status}\n\
                 2026/12/05 15:20:06 INFO  : {name}: Copied (new)\n\
                 2026/12/05 15:20:06 ERROR : {name}: corrupted on transfer: md5 hash differ\n"
            );
            prop_assert!(hash_checked_on_transfer(&log).is_empty());
        }
    }
}
