//! Reading every site file of a root, and the checks that span sites.
//!
//! Two sites claiming the same host name would make Caddy refuse its whole
//! configuration, taking every site down; so both are rejected here, where
//! the generator, the Caddy render step and `sumctl check` all see it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::layout::Root;
use crate::site::{Site, SiteError, SiteErrors};

/// The valid sites of a root and the errors of the invalid ones.
#[derive(Debug, Default)]
pub struct Loaded {
    pub sites: Vec<Site>,
    pub errors: Vec<SiteErrors>,
}

fn file_error(path: &Path, key: &str, problem: String, allowed: &str) -> SiteErrors {
    SiteErrors(vec![SiteError {
        file: path.to_path_buf(),
        line: 1,
        col: 1,
        key: key.into(),
        problem,
        allowed: allowed.into(),
    }])
}

/// Reads and validates one site file; the site name is the file stem.
pub fn load_file(path: &Path) -> Result<Site, SiteErrors> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if path.extension().and_then(|e| e.to_str()) != Some("toml") {
        return Err(file_error(
            path,
            "(file name)",
            "site files must end in .toml".into(),
            "name it /etc/sum/sites/<site>.toml",
        ));
    }
    let text = match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                return Err(file_error(
                    path,
                    "(file)",
                    "is not valid UTF-8".into(),
                    "save the file as UTF-8",
                ))
            }
        },
        Err(e) => {
            return Err(file_error(
                path,
                "(file)",
                format!("cannot be read: {e}"),
                "",
            ))
        }
    };
    Site::parse(stem, path, &text)
}

/// The site files of a directory: regular `*.toml` files, sorted, no hidden files.
pub fn site_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".toml") {
            continue;
        }
        if std::fs::metadata(&path)
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads the given files, then rejects every site that shares a host name
/// with another. Rejecting both sides, rather than the later one, means a
/// new file can never take a host away from a site that is serving it: the
/// serving site keeps its running units and its last good Caddy snippet
/// until the clash is resolved.
pub fn load_files(files: &[PathBuf]) -> Loaded {
    let mut loaded = Loaded::default();
    let mut valid: Vec<(Site, &PathBuf)> = Vec::new();
    for path in files {
        match load_file(path) {
            Ok(site) => valid.push((site, path)),
            Err(e) => loaded.errors.push(e),
        }
    }
    let mut owners: BTreeMap<&str, Vec<(&str, &PathBuf)>> = BTreeMap::new();
    for (site, path) in &valid {
        for h in site.hosts() {
            owners.entry(h).or_default().push((&site.name, *path));
        }
    }
    let mut clashes: Vec<SiteErrors> = Vec::new();
    let mut names: BTreeMap<&str, &PathBuf> = BTreeMap::new();
    let mut keep = vec![true; valid.len()];
    for (i, (site, path)) in valid.iter().enumerate() {
        if let Some(other) = names.get(site.name.as_str()) {
            clashes.push(file_error(
                path,
                "(file name)",
                format!(
                    "site `{}` is already defined by {}",
                    site.name,
                    other.display()
                ),
                "each site needs its own name",
            ));
            keep[i] = false;
            continue;
        }
        names.insert(&site.name, path);
        let clash = site.hosts().find_map(|h| {
            owners[h]
                .iter()
                .find(|(name, _)| *name != site.name)
                .map(|other| (h, other))
        });
        if let Some((host, (other, other_path))) = clash {
            let key = if host == site.domain {
                "domain"
            } else {
                "aliases"
            };
            let mut e = file_error(
                path,
                key,
                format!(
                    "host `{host}` is also claimed by site `{other}` ({}); neither site is \
                     changed until one of them gives it up",
                    other_path.display()
                ),
                "every domain and alias may belong to one site only",
            );
            if let Some((line, col)) = position_of(path, &format!("\"{host}\"")) {
                (e.0[0].line, e.0[0].col) = (line, col);
            }
            clashes.push(e);
            keep[i] = false;
        }
    }
    loaded.errors.extend(clashes);
    loaded.sites = valid
        .into_iter()
        .zip(keep)
        .filter_map(|((site, _), k)| k.then_some(site))
        .collect();
    loaded
}

/// Line and column of the first `needle` in a file, for errors found after parsing.
fn position_of(path: &Path, needle: &str) -> Option<(usize, usize)> {
    let text = std::fs::read_to_string(path).ok()?;
    let offset = text.find(needle)?;
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Some((
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    ))
}

/// Loads every site of a root.
pub fn load_all(root: &Root) -> std::io::Result<Loaded> {
    let files = site_files(&root.sites_dir())?;
    Ok(load_files(&files))
}
