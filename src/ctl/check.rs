//! `sumctl check [FILES…]`: validates site files without writing anything,
//! like `nginx -t` (exit 2 when any has errors).

use std::io::Write;
use std::path::PathBuf;

use crate::config::layout::Root;
use crate::config::sites::{self, Loaded};
use crate::system::failure::{exit_code, Failure};

/// `sumctl check [FILES…]`: the given files, or every site file.
pub fn check(root: &Root, files: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let result = check_files(root, files, out, err);
    exit_code(result, err)
}

fn check_files(
    root: &Root,
    files: &[PathBuf],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let files = if files.is_empty() {
        // The error names the directory.
        sites::site_files(&root.sites_dir()).map_err(|e| Failure::failed(e.to_string()))?
    } else {
        files.to_vec()
    };
    if files.is_empty() {
        let _ = writeln!(out, "no site files in {}", root.sites_dir().display());
        return Ok(());
    }
    let loaded = sites::load_files_keeping(&files, Some(&root.path(sites::LAST_GOOD_DIR)));
    report_valid(&files, &loaded, out);
    report_rejected(&loaded, err);
    if loaded.errors.is_empty() {
        return check_offsite(root, &loaded, out, err);
    }
    Err(Failure::usage(format!(
        "{} of {} site files have errors; the generator skips them until they are fixed",
        loaded.errors.len(),
        files.len()
    )))
}

/// `ok:` for every site whose own file is valid.
fn report_valid(files: &[PathBuf], loaded: &Loaded, out: &mut dyn Write) {
    for site in loaded
        .sites
        .iter()
        .filter(|s| loaded.fallback(&s.name).is_none())
    {
        let _ = writeln!(
            out,
            "ok: {} (site {}, {})",
            files
                .iter()
                .find(|f| f.file_stem().and_then(|s| s.to_str()) == Some(site.name.as_str()))
                .map_or_else(|| site.source.clone(), Clone::clone)
                .display(),
            site.name,
            site.domain
        );
    }
}

/// Every error, and the sites that run on their last good copy meanwhile.
fn report_rejected(loaded: &Loaded, err: &mut dyn Write) {
    for e in &loaded.errors {
        let _ = writeln!(err, "{e}");
    }
    for f in &loaded.fallbacks {
        let _ = writeln!(
            err,
            "site {} runs on its last good configuration, {}, because its site file is \
             rejected (above); fix the file, then `systemctl daemon-reload`",
            f.site,
            f.copy.display()
        );
    }
}

/// The off-host remote of each valid site that has one: a missing
/// configuration, a remote it lacks, and one that does not answer are
/// told apart (`backup::offsite::check`). Any of them is exit 1.
fn check_offsite(
    root: &Root,
    loaded: &Loaded,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let mut bad = 0;
    for site in &loaded.sites {
        match crate::backup::offsite::check(root, site) {
            None => {}
            Some(Ok(line)) => {
                let _ = writeln!(out, "    site {}: {line}", site.name);
            }
            Some(Err(why)) => {
                bad += 1;
                let _ = writeln!(err, "site {}: off-host: {why}", site.name);
            }
        }
    }
    if bad == 0 {
        return Ok(());
    }
    Err(Failure::failed(format!(
        "{bad} site(s) cannot reach their off-host remote; their backups stay local until \
         it is fixed"
    )))
}
