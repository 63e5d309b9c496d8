//! Fetching the site's repository and turning a ref into an immutable
//! release directory (SPEC §7 step 3).
//!
//! A bare mirror (`/srv/sum/<site>/repo.git`) is cloned once and fetched on
//! every deploy. A ref resolves as a branch, then a tag, then a commit id.
//! The release is exported with `git archive` into a temporary directory and
//! renamed into `releases/<UTC>-<sha7>`, so a release directory is either
//! complete or absent.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs git; the error carries git's own message.
fn git(args: &[&str], dir: Option<&Path>) -> Result<String, String> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    // Never prompt for credentials: a deploy runs unattended.
    let out = cmd
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .output()
        .map_err(|e| format!("failed to run git (is it installed?): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        // git's own words, the last of them: a fetch may print megabytes.
        Err(crate::system::text::last_lines(
            &String::from_utf8_lossy(&out.stderr),
            8,
            500,
        ))
    }
}

/// Clones `url` into the bare mirror `repo` the first time, fetches after.
pub fn update_mirror(url: &str, repo: &Path) -> Result<(), String> {
    if repo.join("HEAD").is_file() {
        git(&["remote", "set-url", "origin", url], Some(repo))?;
        git(
            &[
                "fetch",
                "--prune",
                "--prune-tags",
                "--force",
                "--quiet",
                "origin",
            ],
            Some(repo),
        )
        .map_err(|e| format!("git fetch from {url} failed: {e}"))?;
    } else {
        let tmp = repo.with_extension("git.tmp");
        let _ = fs_err::remove_dir_all(&tmp);
        git(
            &[
                "clone",
                "--mirror",
                "--quiet",
                "--",
                url,
                &tmp.to_string_lossy(),
            ],
            None,
        )
        .map_err(|e| format!("git clone of {url} failed: {e}"))?;
        fs_err::rename(&tmp, repo).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The full commit id a ref names in the mirror.
pub fn resolve(repo: &Path, git_ref: &str) -> Result<String, String> {
    let is_hex = git_ref.len() >= 7 && git_ref.bytes().all(|b| b.is_ascii_hexdigit());
    let mut candidates = vec![
        format!("refs/heads/{git_ref}"),
        format!("refs/tags/{git_ref}"),
    ];
    if is_hex {
        candidates.push(git_ref.to_string());
    }
    for c in candidates {
        if let Ok(sha) = git(
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{c}^{{commit}}"),
            ],
            Some(repo),
        ) {
            return Ok(sha);
        }
    }
    Err(format!(
        "`{git_ref}` is not a branch, tag or commit of the repository; \
         `git ls-remote <url>` lists what there is"
    ))
}

/// Exports `sha` into `releases/<stamp>-<sha7>` and returns its path.
pub fn build_release(
    repo: &Path,
    releases: &Path,
    sha: &str,
    stamp: &str,
) -> Result<PathBuf, String> {
    let name = format!("{stamp}-{}", crate::system::text::prefix(sha, 7));
    let dest = releases.join(&name);
    if dest.exists() {
        return Err(format!("{} already exists", dest.display()));
    }
    let tmp = releases.join(format!(".{name}.tmp"));
    let _ = fs_err::remove_dir_all(&tmp);
    fs_err::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    let archive = Command::new("bash")
        .arg("-c")
        .arg("set -o pipefail; git -C \"$1\" archive --format=tar \"$2\" | tar -x -C \"$3\"")
        .args(["bash", &repo.to_string_lossy(), sha, &tmp.to_string_lossy()])
        .output()
        .map_err(|e| format!("failed to run git archive: {e}"))?;
    if !archive.status.success() {
        let _ = fs_err::remove_dir_all(&tmp);
        return Err(format!(
            "exporting {sha} failed: {}",
            crate::system::text::last_lines(&String::from_utf8_lossy(&archive.stderr), 8, 500)
        ));
    }
    fs_err::rename(&tmp, &dest).map_err(|e| e.to_string())?;
    Ok(dest)
}
