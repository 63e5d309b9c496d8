//! The layer rule of docs/architecture.md, read from the code itself:
//! binaries → commands (ctl, deploy, backup) → services (render,
//! site_state, probe, system) → config. A module never names a component of
//! its own layer or one above it, so the components cannot form a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each component's layer; a file may name only components of a lower one.
/// Within the commands and the services the order is finer, so that no two
/// components of a layer can name each other.
const LAYERS: &[(&str, u8)] = &[
    ("config", 0),
    ("system", 1),
    ("site_state", 2),
    ("probe", 2),
    ("render", 3),
    ("backup", 4),
    ("deploy", 5),
    ("ctl", 6),
];

fn layer(component: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find(|(c, _)| *c == component)
        .map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Expands one `use` tree or path after `crate::` into whole paths:
/// `{a::b, c::{d, e}}` → `a::b`, `c::d`, `c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| format!("{prefix}{p}"))
        .collect()
}

/// Every crate path a file names, outside comments: `use crate::…;`
/// statements (whole trees) and `crate::a::b` in expressions.
fn crate_paths(text: &str) -> Vec<String> {
    paths_after(text, "crate::")
}

/// Every path after `anchor` (`crate::` or `super::`), outside comments.
fn paths_after(text: &str, anchor: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut paths = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find(anchor) {
        let after = &rest[i + anchor.len()..];
        let end = if after.starts_with('{') {
            after.find(';').unwrap_or(after.len())
        } else {
            after
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(after.len())
        };
        paths.extend(expand(&after[..end]));
        rest = &after[end..];
    }
    paths
}

/// Component of a file under src/: its first folder, or its stem.
fn component_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str();
    Path::new(first)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn no_component_names_one_of_its_own_layer_or_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut upward = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for file in &files {
        let component = component_of(&src, file);
        if component == "lib" || component == "bin" {
            continue;
        }
        let own = layer(&component).unwrap_or_else(|| {
            panic!(
                "{}: component `{component}` has no layer in LAYERS",
                file.display()
            )
        });
        let text = std::fs::read_to_string(file).unwrap();
        for path in crate_paths(&text) {
            let target = path.split("::").next().unwrap().trim().to_string();
            *seen.entry(component.clone()).or_default() += 1;
            if target == component || target == "self" {
                continue;
            }
            let theirs = layer(&target).unwrap_or_else(|| {
                panic!(
                    "{}: `crate::{path}` names no known component",
                    file.display()
                )
            });
            if theirs >= own {
                upward.insert(format!(
                    "{} (layer {own}) names crate::{path} (layer {theirs})",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    // The reader works: the crate's components do name each other.
    assert!(seen.len() >= 6, "too few crate paths read: {seen:?}");
    assert!(
        upward.is_empty(),
        "imports against the layer rule:\n{}",
        upward.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_reader_sees_grouped_and_nested_imports() {
    let text = "use crate::{a::b, c::{d, e}};\n// crate::f::g\nlet x = crate::h::i(1);";
    assert_eq!(crate_paths(text), ["a::b", "c::d", "c::e", "h::i"]);
}

/// The files of one component folder that a file imports: `crate::c::m…`
/// and `super::m…` both name `c/m.rs` (or `c/m/mod.rs`). Test modules are
/// left out; they may use anything of their own file.
fn sibling_imports(component: &str, text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .collect::<Vec<_>>()
        .join("\n");
    let own = format!("{component}::");
    let mut names = BTreeSet::new();
    let crate_side = crate_paths(&code)
        .into_iter()
        .filter_map(|p| p.strip_prefix(&own).map(str::to_string));
    for path in crate_side.chain(paths_after(&code, "super::")) {
        let first = path.split("::").next().unwrap().trim();
        if !first.is_empty()
            && first != "self"
            && first.chars().all(|c| c.is_lowercase() || c == '_')
        {
            names.insert(first.to_string());
        }
    }
    names
}

#[test]
fn the_files_of_a_component_import_each_other_without_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut cycles = Vec::new();
    let mut edges_seen = 0;
    for (component, _) in LAYERS {
        let dir = src.join(component);
        if !dir.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in &files {
            let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
            if stem == "mod" || file.parent() != Some(dir.as_path()) {
                continue;
            }
            let text = std::fs::read_to_string(file).unwrap();
            let targets: BTreeSet<String> = sibling_imports(component, &text)
                .into_iter()
                .filter(|t| {
                    *t != stem && (dir.join(format!("{t}.rs")).is_file() || dir.join(t).is_dir())
                })
                .collect();
            edges_seen += targets.len();
            graph.insert(stem, targets);
        }
        for start in graph.keys() {
            if let Some(cycle) = path_back(&graph, start, start, &mut vec![start.clone()]) {
                cycles.push(format!("{component}/: {}", cycle.join(" → ")));
            }
        }
    }
    assert!(
        edges_seen >= 5,
        "too few imports between files read: {edges_seen}"
    );
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// A path of imports from `at` back to `start`, if there is one.
fn path_back(
    graph: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    at: &str,
    trail: &mut Vec<String>,
) -> Option<Vec<String>> {
    for next in graph.get(at).into_iter().flatten() {
        if next == start {
            let mut cycle = trail.clone();
            cycle.push(next.clone());
            return Some(cycle);
        }
        if trail.contains(next) {
            continue;
        }
        trail.push(next.clone());
        if let Some(c) = path_back(graph, start, next, trail) {
            return Some(c);
        }
        trail.pop();
    }
    None
}

#[test]
fn the_reader_finds_a_cycle_between_two_files() {
    let mut graph = BTreeMap::new();
    graph.insert("run".to_string(), BTreeSet::from(["rollback".to_string()]));
    graph.insert(
        "rollback".to_string(),
        BTreeSet::from(["run".to_string(), "state".to_string()]),
    );
    graph.insert("state".to_string(), BTreeSet::new());
    let cycle = path_back(&graph, "run", "run", &mut vec!["run".to_string()]);
    assert_eq!(cycle.unwrap(), ["run", "rollback", "run"]);
    assert_eq!(
        path_back(&graph, "state", "state", &mut vec!["state".to_string()]),
        None
    );
    assert_eq!(
        sibling_imports("deploy", "use super::run::{Log, swap};\nuse crate::deploy::app::Runner;\nuse crate::system::x;\n#[cfg(test)]\nuse super::rollback;"),
        BTreeSet::from(["app".to_string(), "run".to_string()])
    );
}
