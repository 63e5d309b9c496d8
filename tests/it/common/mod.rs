//! Helpers shared by the integration tests: temporary roots, tree
//! snapshots and comparisons against checked-in expected files.

pub mod caddy;
pub mod deployfx;
pub mod pg;
pub mod redis;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// A site file's minimal valid text.
pub const MINIMAL: &str =
    "domain = \"acme.example.com\"\n[git]\nurl = \"https://git.example.com/acme.git\"\n";

/// A temporary root with `etc/sum/sites/` holding the given files.
pub fn root_with_sites(sites: &[(&str, &str)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("etc/sum/sites");
    fs::create_dir_all(&dir).unwrap();
    for (name, text) in sites {
        fs::write(dir.join(name), text).unwrap();
    }
    root
}

pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let ft = entry.file_type().unwrap();
        if ft.is_dir() {
            copy_tree(&entry.path(), &target);
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// One entry of a tree snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File(Vec<u8>, u32),
    Link(PathBuf),
}

/// Every path below `dir` with its kind, content (files), mode and link target.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Node> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path.strip_prefix(base).unwrap().to_path_buf();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.insert(rel, Node::Link(fs::read_link(&path).unwrap()));
            } else if meta.is_dir() {
                out.insert(rel, Node::Dir);
                walk(base, &path, out);
            } else {
                let mode = meta.permissions().mode() & 0o7777;
                out.insert(rel, Node::File(fs::read(&path).unwrap(), mode));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// True when golden files should be rewritten instead of compared.
pub fn blessing() -> bool {
    std::env::var_os("SUM_BLESS").is_some_and(|v| v == "1")
}

/// Compares the tree `actual` with `expected` (or re-blesses it), ignoring
/// file modes, and panics with a `diff -ru` of the two on a mismatch.
pub fn assert_tree_eq(expected: &Path, actual: &Path) {
    if blessing() {
        let _ = fs::remove_dir_all(expected);
        copy_tree(actual, expected);
        return;
    }
    let strip = |m: BTreeMap<PathBuf, Node>| -> BTreeMap<PathBuf, Node> {
        m.into_iter()
            .map(|(k, v)| match v {
                Node::File(c, _) => (k, Node::File(c, 0)),
                other => (k, other),
            })
            .collect()
    };
    let (e, a) = (strip(snapshot(expected)), strip(snapshot(actual)));
    if e != a {
        let diff = std::process::Command::new("diff")
            .args(["-ru", "--no-dereference"])
            .arg(expected)
            .arg(actual)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        panic!(
            "{} differs from the expected tree {} (re-bless with SUM_BLESS=1 and review the diff):\n{diff}",
            actual.display(),
            expected.display()
        );
    }
}

/// Compares text with an expected file (or re-blesses it).
pub fn assert_text_eq(expected_file: &Path, actual: &str) {
    if blessing() {
        fs::create_dir_all(expected_file.parent().unwrap()).unwrap();
        fs::write(expected_file, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(expected_file).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (bless with SUM_BLESS=1)",
            expected_file.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs (re-bless with SUM_BLESS=1):\n--- expected\n{expected}\n--- actual\n{actual}",
        expected_file.display()
    );
}

/// Fails loudly in CI when a tool a test needs is missing; elsewhere the
/// caller may skip with a note.
pub fn require_tool(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{tool} is required in CI but is not installed");
        }
        eprintln!("note: {tool} is not installed; skipping this test");
    }
    found
}

/// `promtool check metrics` on a metrics file: promtool from PATH, or the
/// one `bash tests/promtool.sh --install` unpacks into target/promtool.
/// Panics with promtool's words when it finds a problem; required in CI.
pub fn promtool_check_metrics(file: &Path) -> bool {
    let unpacked = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/promtool/usr/bin/promtool");
    let promtool = if unpacked.exists() {
        unpacked
    } else if require_tool("promtool") {
        PathBuf::from("promtool")
    } else {
        return false;
    };
    let out = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics {}:\n{said}\n{}",
        file.display(),
        std::fs::read_to_string(file).unwrap_or_default()
    );
    true
}
