//! The site's `.env`: its safety rules (SPEC §3) and its contents.
//!
//! systemd reads it as an `EnvironmentFile=` for the site's units; our own
//! programs (deploy, backup, restore) read it here with the same syntax, so
//! the app, pg_dump and manage.py all see the same `DATABASE_URL`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Why a `.env` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError(pub String);

impl std::fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EnvFileError {}

/// Checks ownership and mode: `root:<group>`, not group- or world-writable,
/// not world-readable. `group` is the expected group id (None: not checked,
/// for test roots).
pub fn check_safe(path: &Path, gid: Option<u32>) -> Result<(), EnvFileError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| {
        EnvFileError(if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{} is missing: create it with DATABASE_URL, REDIS_URL and the app's \
                 secrets (`sumctl new` writes a skeleton)",
                path.display()
            )
        } else {
            format!("cannot read {}: {e}", path.display())
        })
    })?;
    if !meta.file_type().is_file() {
        return Err(EnvFileError(format!(
            "{} is not a regular file (a symlink or directory is refused)",
            path.display()
        )));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(EnvFileError(format!(
            "{} is group- or world-writable (mode {mode:04o}); fix with `chmod 0640 {}`",
            path.display(),
            path.display()
        )));
    }
    if mode & 0o004 != 0 {
        return Err(EnvFileError(format!(
            "{} is world-readable (mode {mode:04o}) and holds secrets; fix with `chmod 0640 {}`",
            path.display(),
            path.display()
        )));
    }
    if let Some(gid) = gid {
        if meta.uid() != 0 || meta.gid() != gid {
            return Err(EnvFileError(format!(
                "{} must be owned by root and the site's group (uid 0, gid {gid}), not uid {} gid {}; \
                 fix with `chown root:<site group> {}`",
                path.display(),
                meta.uid(),
                meta.gid(),
                path.display()
            )));
        }
    }
    Ok(())
}

/// Parses EnvironmentFile= syntax: `KEY=VALUE` lines, `#`/`;` comments,
/// optional single or double quotes around the value.
pub fn parse(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_start_matches("export ").trim();
        if key.is_empty() {
            continue;
        }
        let value = value.trim();
        let value = match value.as_bytes() {
            [b'"', .., b'"'] if value.len() >= 2 => value[1..value.len() - 1]
                .replace("\\\"", "\"")
                .replace("\\\\", "\\"),
            [b'\'', .., b'\''] if value.len() >= 2 => value[1..value.len() - 1].to_string(),
            _ => value.to_string(),
        };
        out.retain(|(k, _): &(String, String)| k != key);
        out.push((key.to_string(), value));
    }
    out
}

/// Reads and parses a `.env` after checking it is safe.
pub fn read(path: &Path, gid: Option<u32>) -> Result<Vec<(String, String)>, EnvFileError> {
    check_safe(path, gid)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| EnvFileError(format!("cannot read {}: {e}", path.display())))?;
    Ok(parse(&text))
}

/// The value of `key`, or an error saying which file lacks it.
pub fn get<'a>(
    env: &'a [(String, String)],
    key: &str,
    path: &Path,
) -> Result<&'a str, EnvFileError> {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| EnvFileError(format!("{} has no {key}= line", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn parses_environment_file_syntax() {
        let env = parse(
            "# comment\n; other\nA=1\nB = two words \nC=\"quoted \\\"x\\\"\"\nD='single'\nexport E=5\nA=override\nnoequals\n",
        );
        assert_eq!(
            env,
            vec![
                ("B".into(), "two words".into()),
                ("C".into(), "quoted \"x\"".into()),
                ("D".into(), "single".into()),
                ("E".into(), "5".into()),
                ("A".into(), "override".into()),
            ]
        );
    }

    #[test]
    fn unsafe_modes_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        assert!(check_safe(&p, None).unwrap_err().0.contains("is missing"));
        std::fs::write(&p, "A=1\n").unwrap();
        for (mode, needle) in [
            (0o644, "world-readable"),
            (0o660, "writable"),
            (0o602, "writable"),
        ] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = check_safe(&p, None).unwrap_err().0;
            assert!(
                e.contains(needle) && e.contains("chmod 0640"),
                "{mode:o}: {e}"
            );
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(check_safe(&p, None), Ok(()));
        let wrong_gid = std::fs::metadata(&p).unwrap().gid() + 1;
        assert!(check_safe(&p, Some(wrong_gid))
            .unwrap_err()
            .0
            .contains("must be owned by root"));
    }
}
