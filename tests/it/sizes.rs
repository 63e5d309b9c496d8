//! Sizes a reader can hold at once (docs/architecture.md): no file of
//! `src/` over 600 lines before its test module, no function over 80
//! lines outside tests. Read from the code as rustfmt lays it out: a
//! function ends at the first closing brace at its own indentation.

use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 80;

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

/// The lines of a file before its `#[cfg(test)]` module.
fn code_lines(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .collect()
}

/// Every function's name, first line (1-based) and length in lines.
fn functions(lines: &[&str]) -> Vec<(String, usize, usize)> {
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let after = trimmed
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("pub ")
            .trim_start_matches("const ")
            .trim_start_matches("unsafe ");
        let Some(rest) = after.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // A declaration without a body (in a trait) has no length.
        let end = lines[i..]
            .iter()
            .position(|l| {
                let own_level = l.starts_with(indent) && !l[indent.len()..].starts_with(' ');
                l.starts_with(&format!("{indent}}}")) || own_level && l.trim_end().ends_with(';')
            })
            .map(|n| i + n);
        if let Some(end) = end {
            found.push((name, i + 1, end - i + 1));
        }
    }
    found
}

fn sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let name = f.strip_prefix(&src).unwrap().display().to_string();
            (name, std::fs::read_to_string(&f).unwrap())
        })
        .collect()
}

#[test]
fn no_file_is_longer_than_a_reader_can_hold() {
    let long: Vec<String> = sources()
        .iter()
        .map(|(name, text)| (name, code_lines(text).len()))
        .filter(|(_, n)| *n > MAX_FILE_LINES)
        .map(|(name, n)| format!("src/{name}: {n} lines before its tests"))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn no_function_is_longer_than_a_reader_can_hold() {
    let mut seen = 0;
    let mut long = Vec::new();
    for (name, text) in sources() {
        for (f, line, n) in functions(&code_lines(&text)) {
            seen += 1;
            if n > MAX_FN_LINES {
                long.push(format!("src/{name}:{line}: fn {f} is {n} lines"));
            }
        }
    }
    assert!(seen > 200, "only {seen} functions read");
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_reader_measures_bodies_and_skips_declarations_and_tests() {
    let text = "trait T {\n    fn a(&self);\n    fn d(\n        x: u8,\n    ) -> u8;\n}\npub fn b() {\n    if x {\n    }\n}\n#[cfg(test)]\nfn c() {}\n";
    let lines = code_lines(text);
    assert_eq!(lines.len(), 10);
    assert_eq!(
        functions(&lines),
        [
            ("a".to_string(), 2, 1),
            ("d".to_string(), 3, 3),
            ("b".to_string(), 7, 4)
        ]
    );
}
