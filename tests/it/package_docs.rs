//! Every document the README or a man page sends a reader to ships in the
//! package: `docs/<name>.md` under /usr/share/doc/sum-golden-path/docs/,
//! and every /usr/share/doc/sum-golden-path/… path a page names. Read from
//! the package's own asset table in Cargo.toml; the e2e checks the
//! installed files too.

use std::collections::BTreeSet;
use std::path::Path;

const DOC_DIR: &str = "usr/share/doc/sum-golden-path/";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The installed paths (without a leading `/`) of the package's assets.
fn shipped() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let manifest: toml::Value = toml::from_str(&text).unwrap();
    let assets = manifest["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .unwrap();
    assets
        .iter()
        .map(|a| {
            let (source, target) = (a[0].as_str().unwrap(), a[1].as_str().unwrap());
            if target.ends_with('/') {
                let name = Path::new(source).file_name().unwrap().to_string_lossy();
                format!("{target}{name}")
            } else {
                target.to_string()
            }
        })
        .collect()
}

/// Words of `text` that start with `prefix` and end before a character
/// that cannot be in a path.
fn named(text: &str, prefix: &str) -> BTreeSet<String> {
    let text = text.replace("\\-", "-");
    let mut found = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find(prefix) {
        let word: String = rest[i..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || "/_.-".contains(*c))
            .collect();
        found.insert(word.trim_end_matches('.').to_string());
        rest = &rest[i + prefix.len()..];
    }
    found
}

fn pages() -> Vec<(String, String)> {
    let mut pages = vec![(
        "README.md".to_string(),
        std::fs::read_to_string(repo().join("README.md")).unwrap(),
    )];
    for entry in std::fs::read_dir(repo().join("man")).unwrap() {
        let path = entry.unwrap().path();
        let name = format!("man/{}", path.file_name().unwrap().to_string_lossy());
        pages.push((name, std::fs::read_to_string(&path).unwrap()));
    }
    pages
}

#[test]
fn every_document_the_readme_or_a_man_page_names_is_in_the_package() {
    let shipped = shipped();
    let mut missing = Vec::new();
    let mut seen = 0;
    for (page, text) in pages() {
        // The README and the man pages name docs/… relative to the
        // README, which ships in the package's doc directory.
        for doc in named(&text, "docs/")
            .into_iter()
            .filter(|d| d.ends_with(".md"))
        {
            seen += 1;
            if !repo().join(&doc).is_file() {
                missing.push(format!(
                    "{page} names {doc}, which is not in the repository"
                ));
            }
            if !shipped.contains(&format!("{DOC_DIR}{doc}")) {
                missing.push(format!(
                    "{page} names {doc}, which the package does not ship"
                ));
            }
        }
        for path in named(&text, "/usr/share/doc/") {
            seen += 1;
            if !shipped.contains(path.trim_start_matches('/')) {
                missing.push(format!(
                    "{page} names {path}, which the package does not ship"
                ));
            }
        }
    }
    assert!(seen >= 8, "only {seen} document paths read");
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn the_reader_finds_paths_in_markdown_and_roff() {
    let found = named(
        "see docs/deploy.md. And \\fI/usr/share/doc/sum\\-golden\\-path/examples/acme.toml\\fR",
        "docs/",
    );
    assert_eq!(found, BTreeSet::from(["docs/deploy.md".to_string()]));
    let found = named(
        ".I /usr/share/doc/sum\\-golden\\-path/examples/acme.toml\n",
        "/usr/share/doc/",
    );
    assert_eq!(
        found,
        BTreeSet::from(["/usr/share/doc/sum-golden-path/examples/acme.toml".to_string()])
    );
}
