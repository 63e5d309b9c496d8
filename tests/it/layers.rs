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
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
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
