//! Golden tests: fixture site trees under `tests/golden/<case>/sites/` and
//! the generator's, Caddy render step's and log's expected output under
//! `tests/golden/<case>/expected/`. `SUM_BLESS=1 cargo test --test it golden::`
//! rewrites the expected files; review the diff before committing.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use sum::config::layout::Root;
use sum::config::sites;
use sum::render::caddy::{self, Served};
use sum::render::generator::{self, Log};
use sum::site_state::PreviousStatic;

fn case_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case)
}

/// A second deploy: both releases collected their static files into
/// `<release>/collect_static`, and the first one's stay served.
fn with_previous(site: &sum::config::site::Site) -> Served {
    let home = format!("/srv/sum/{}", site.name);
    Served {
        static_dir: format!("{home}/releases/20261203T100000Z-bbbbbbb/collect_static"),
        previous_static: Some(PreviousStatic {
            release: "20261202T090000Z-aaaaaaa".into(),
            static_dir: format!("{home}/releases/20261202T090000Z-aaaaaaa/collect_static"),
        }),
        ..Served::defaults(site, true)
    }
}

fn run_case(case: &str) {
    let dir = case_dir(case);
    let root = tempfile::tempdir().unwrap();
    let sites_dir = root.path().join("etc/sum/sites");
    common::copy_tree(&dir.join("sites"), &sites_dir);
    let out = tempfile::tempdir().unwrap();

    let mut log = Log::Capture(Vec::new());
    let outcome = generator::run(&Root::new(root.path()), out.path(), &mut log);
    let Log::Capture(lines) = log else {
        unreachable!()
    };
    let root_text = root.path().to_string_lossy().into_owned();
    let mut report = format!(
        "generated sites: {}\nfailed sites: {}\n",
        outcome.generated_sites, outcome.failed_sites
    );
    for line in lines {
        report.push_str(&line.replace(&root_text, "$ROOT"));
        report.push('\n');
    }
    common::assert_text_eq(&dir.join("expected/log"), &report);
    common::assert_tree_eq(&dir.join("expected/generator"), out.path());

    // The Caddy snippets, before and after a first deploy, and after a
    // second one whose release collected its own static files.
    let loaded = sites::load_all(&Root::new(root.path())).unwrap();
    let snippets = tempfile::tempdir().unwrap();
    for site in &loaded.sites {
        for deployed in [false, true] {
            let text = caddy::snippet(site, &Served::defaults(site, deployed)).unwrap();
            let name = if deployed { "deployed" } else { "new" };
            fs::write(
                snippets.path().join(format!("{}.{name}.caddy", site.name)),
                text,
            )
            .unwrap();
        }
        fs::write(
            snippets
                .path()
                .join(format!("{}.previous.caddy", site.name)),
            caddy::snippet(site, &with_previous(site)).unwrap(),
        )
        .unwrap();
    }
    common::assert_tree_eq(&dir.join("expected/caddy"), snippets.path());
}

#[test]
fn basic_site() {
    run_case("basic");
}

#[test]
fn every_key_set() {
    run_case("full");
}

#[test]
fn good_sites_survive_bad_neighbours() {
    run_case("mixed");
}

#[test]
fn no_sites_writes_nothing() {
    run_case("empty");
    let expected = case_dir("empty").join("expected/generator");
    assert!(common::snapshot(&expected).is_empty());
}

#[test]
fn output_is_deterministic() {
    let dir = case_dir("full");
    let root = tempfile::tempdir().unwrap();
    common::copy_tree(&dir.join("sites"), &root.path().join("etc/sum/sites"));
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let r = Root::new(root.path());
    generator::run(&r, a.path(), &mut Log::Capture(Vec::new()));
    generator::run(&r, b.path(), &mut Log::Capture(Vec::new()));
    assert_eq!(common::snapshot(a.path()), common::snapshot(b.path()));
    assert!(!common::snapshot(a.path()).is_empty());
}
