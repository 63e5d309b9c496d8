//! Reading every site file of a root, and the checks that span sites.
//!
//! Two sites claiming the same host name would make Caddy refuse its whole
//! configuration, taking every site down; so both are rejected here, where
//! the generator, the Caddy render step and `sumctl check` all see it.
//!
//! A site file that once deployed and then became invalid (a typo, then
//! `daemon-reload`) must not take its running site down: its units and its
//! Caddy snippet are made from the **last good copy** of the file instead,
//! `/etc/sum/last-good/<site>.toml`, written by every successful deploy and
//! rollback (`site_state::last_good::save`). It lives in `/etc` because generators run
//! before `/var` may be mounted (systemd.generator(7)), and it is a copy of
//! the site file rather than of the units, so a package upgrade renders it
//! with the new code. Only a deleted site file removes a site.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::layout::Root;
use crate::config::site::{Site, SiteError, SiteErrors};

/// Where the last good copies of site files live (see the module doc).
pub const LAST_GOOD_DIR: &str = "/etc/sum/last-good";

/// The valid sites of a root and the errors of the invalid ones.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every site to run: valid files, and the last good copies of the
    /// sites in `fallbacks`.
    pub sites: Vec<Site>,
    /// One entry per rejected file, fallen back or not.
    pub errors: Vec<SiteErrors>,
    /// The sites that run on their last good copy, because their file is
    /// invalid or clashes with another.
    pub fallbacks: Vec<Fallback>,
}

/// A site whose file was rejected and that runs on its last good copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub site: String,
    /// The last good copy (`/etc/sum/last-good/<site>.toml` under the root).
    pub copy: PathBuf,
    /// Why the site file itself was rejected: its first error.
    pub why: String,
}

impl Loaded {
    /// The fallback of a site, if it runs on its last good copy.
    pub fn fallback(&self, site: &str) -> Option<&Fallback> {
        self.fallbacks.iter().find(|f| f.site == site)
    }
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
    let text = match fs_err::read(path) {
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
    let entries = match fs_err::read_dir(dir) {
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
        if fs_err::metadata(&path)
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
/// serving site keeps running (on its last good copy, see
/// [`load_files_keeping`]) until the clash is resolved.
pub fn load_files(files: &[PathBuf]) -> Loaded {
    load_files_keeping(files, None)
}

/// [`load_files`], then every rejected site that has a last good copy in
/// `last_good` runs on that copy, unless the copy itself is invalid or
/// claims a host of a site that is kept.
pub fn load_files_keeping(files: &[PathBuf], last_good: Option<&Path>) -> Loaded {
    let mut loaded = Loaded::default();
    let mut valid: Vec<(Site, &PathBuf)> = Vec::new();
    for path in files {
        match load_file(path) {
            Ok(site) => valid.push((site, path)),
            Err(e) => loaded.errors.push(e),
        }
    }
    let (sites, clashes) = reject_clashes(valid);
    loaded.errors.extend(clashes);
    loaded.sites = sites;
    if let Some(dir) = last_good {
        fall_back(&mut loaded, files, dir);
    }
    loaded
}

/// The last good copies of the rejected sites, where they can run.
fn fall_back(loaded: &mut Loaded, files: &[PathBuf], dir: &Path) {
    let mut copies: Vec<(Site, PathBuf, String)> = Vec::new();
    for errors in &loaded.errors {
        let Some(file) = errors.0.first().map(|e| e.file.clone()) else {
            continue;
        };
        if !files.contains(&file) {
            continue;
        }
        let Some(name) = file.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let copy = dir.join(format!("{name}.toml"));
        if !copy.is_file() || copies.iter().any(|(s, _, _)| s.name == name) {
            continue;
        }
        // A copy that is no longer valid (the rules changed with an
        // upgrade) is reported with the file's own errors, not used.
        if let Ok(site) = load_file(&copy) {
            if site.name == name {
                let why = errors.0.first().map(|e| e.to_string()).unwrap_or_default();
                copies.push((site, copy, why));
            }
        }
    }
    // A copy may not take a host from a kept site, nor share one with
    // another copy.
    let taken: Vec<String> = loaded
        .sites
        .iter()
        .flat_map(|s| s.hosts().map(str::to_string))
        .collect();
    let mut chosen: Vec<(Site, PathBuf, String)> = Vec::new();
    for (site, copy, why) in &copies {
        let clashes = site.hosts().any(|h| {
            taken.iter().any(|t| t == h)
                || copies
                    .iter()
                    .any(|(o, _, _)| o.name != site.name && o.hosts().any(|x| x == h))
        });
        if !clashes {
            chosen.push((site.clone(), copy.clone(), why.clone()));
        }
    }
    for (site, copy, why) in chosen {
        loaded.fallbacks.push(Fallback {
            site: site.name.clone(),
            copy,
            why,
        });
        loaded.sites.push(site);
    }
    loaded.sites.sort_by(|a, b| a.name.cmp(&b.name));
}

/// Splits valid sites into those kept and the errors of those that share
/// a name or a host with another.
fn reject_clashes(valid: Vec<(Site, &PathBuf)>) -> (Vec<Site>, Vec<SiteErrors>) {
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
    let sites = valid
        .into_iter()
        .zip(keep)
        .filter_map(|((site, _), k)| k.then_some(site))
        .collect();
    (sites, clashes)
}

/// Line and column of the first `needle` in a file, for errors found after parsing.
fn position_of(path: &Path, needle: &str) -> Option<(usize, usize)> {
    let text = fs_err::read_to_string(path).ok()?;
    let offset = text.find(needle)?;
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Some((
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    ))
}

/// The names of the site files of a root, sorted (for completion: nothing
/// is validated, an unreadable directory gives none).
pub fn site_names(root: &Root) -> Vec<String> {
    let mut names: Vec<String> = site_files(&root.sites_dir())
        .unwrap_or_default()
        .iter()
        .filter_map(|f| Some(f.file_stem()?.to_str()?.to_string()))
        .collect();
    names.sort();
    names
}

/// Loads every site of a root, falling back to last good copies.
pub fn load_all(root: &Root) -> std::io::Result<Loaded> {
    let files = site_files(&root.sites_dir())?;
    Ok(load_files_keeping(&files, Some(&root.path(LAST_GOOD_DIR))))
}

/// Loads one site by name: `<sites_dir>/<name>.toml`, with a clear error
/// when the name is not a site name or the file does not exist.
pub fn load_site(root: &Root, name: &str) -> Result<Site, String> {
    crate::config::site::check_site_name(name)?;
    let path = root.sites_dir().join(format!("{name}.toml"));
    if !path.exists() {
        return Err(format!(
            "no site `{name}`: {} does not exist",
            path.display()
        ));
    }
    load_file(&path).map_err(|e| e.to_string())
}
