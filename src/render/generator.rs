//! The systemd generator (systemd.generator(7)): site files in, units out.
//!
//! Rules it keeps: one or three output directories; only units and `.wants/`
//! symlinks, written into the first (normal) directory; nothing spawned, no
//! user or group look-ups; every site validated fully before any of its files
//! is written; a bad site is skipped and reported while good sites are still
//! generated; exit 1 if any site failed; nothing at all in the initrd.
//!
//! A bad site that has a last good copy (`sites::LAST_GOOD_DIR`) is not
//! skipped: its units are made from that copy and the error is reported
//! all the same, so a typo reloaded never removes a running site's socket.

use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::config::layout::Root;
use crate::config::sites;
use crate::render::units::{self, Rendered};
use crate::system::fsutil::{symlink_atomic, write_atomic};

/// Where problems are reported: the kernel log under systemd (the only log a
/// generator has that early), stderr when run by hand.
pub enum Log {
    Kmsg(std::fs::File),
    Stderr,
    /// Keeps the lines, for tests and callers that report them themselves.
    Capture(Vec<String>),
}

impl Log {
    /// Uses /dev/kmsg only when systemd runs us and it is a real character
    /// device: in a container writing to it would create a plain file.
    pub fn detect() -> Log {
        let under_systemd = std::env::var_os("SYSTEMD_SCOPE").is_some();
        let is_char_device = fs_err::metadata("/dev/kmsg")
            .map(|m| m.file_type().is_char_device())
            .unwrap_or(false);
        if under_systemd && is_char_device {
            if let Ok(f) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
                return Log::Kmsg(f);
            }
        }
        Log::Stderr
    }

    pub fn error(&mut self, msg: &str) {
        for line in msg.lines() {
            match self {
                // <3> is LOG_ERR; one write per line keeps kmsg records whole.
                Log::Kmsg(f) => {
                    let _ = f.write_all(format!("<3>sum-generator: {line}\n").as_bytes());
                }
                Log::Stderr => eprintln!("sum-generator: {line}"),
                Log::Capture(lines) => lines.push(line.to_string()),
            }
        }
    }
}

/// What a run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub generated_sites: usize,
    pub failed_sites: usize,
}

/// True inside the initrd, where our sites and their paths do not exist yet.
pub fn in_initrd(root: &Root) -> bool {
    std::env::var_os("SYSTEMD_IN_INITRD").is_some_and(|v| v == "1")
        || root.path("/etc/initrd-release").exists()
}

/// Generates the units of every valid site of `root` into `normal_dir`.
pub fn run(root: &Root, normal_dir: &Path, log: &mut Log) -> Outcome {
    let mut outcome = Outcome::default();
    if in_initrd(root) {
        return outcome;
    }
    let loaded = match sites::load_all(root) {
        Ok(l) => l,
        Err(e) => {
            log.error(&format!(
                "failed to read {}: {e}",
                root.sites_dir().display()
            ));
            outcome.failed_sites = 1;
            return outcome;
        }
    };
    for errors in &loaded.errors {
        let name = errors
            .0
            .first()
            .and_then(|e| e.file.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match loaded.fallback(&name) {
            Some(f) => log.error(&format!(
                "site {name}: its site file is rejected; KEEPING ITS LAST GOOD UNITS, made from \
                 {} (saved by its last successful deploy), until the file is fixed:\n{errors}",
                f.copy.display()
            )),
            None => log.error(&format!("skipping site: {errors}")),
        }
        outcome.failed_sites += 1;
    }
    if !loaded.errors.is_empty() {
        log.error("good sites were still generated; `sumctl check` shows every error");
    }
    for site in &loaded.sites {
        let rendered = units::render(site);
        match write_site(normal_dir, &rendered) {
            Ok(()) => outcome.generated_sites += 1,
            Err(e) => {
                log.error(&format!("site {}: {e}", site.name));
                outcome.failed_sites += 1;
            }
        }
    }
    outcome
}

fn write_site(dir: &Path, rendered: &Rendered) -> std::io::Result<()> {
    for unit in &rendered.units {
        write_atomic(&dir.join(&unit.name), unit.contents.as_bytes(), 0o644)?;
    }
    for (dir_name, file, contents) in &rendered.dropins {
        let dropin_dir = dir.join(dir_name);
        fs_err::create_dir_all(&dropin_dir)?;
        write_atomic(&dropin_dir.join(file), contents.as_bytes(), 0o644)?;
    }
    for (target, unit) in &rendered.wants {
        let wants_dir = dir.join(format!("{target}.wants"));
        fs_err::create_dir_all(&wants_dir)?;
        symlink_atomic(&PathBuf::from("..").join(unit), &wants_dir.join(unit))?;
    }
    Ok(())
}

/// Picks the normal output directory from the arguments systemd passes:
/// one directory, or three (normal, early, late).
pub fn normal_dir_from_args(args: &[String]) -> Result<PathBuf, String> {
    match args {
        [normal] | [normal, _, _] if !normal.is_empty() => Ok(PathBuf::from(normal)),
        _ => Err(format!(
            "expected 1 or 3 output directories, got {}\n\
             usage: sum-generator NORMAL_DIR [EARLY_DIR LATE_DIR]  (systemd.generator(7))",
            args.len()
        )),
    }
}
