//! The generated output checked by the real tools that will read it:
//! `systemd-analyze verify` and `security`, and `caddy validate`/`adapt` run
//! as the `caddy` user (as root it would leave root-owned files behind that
//! break caddy.service).

use crate::common;
use crate::common::caddy::{caddy_dir, RunningCaddy};

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use sum::config::layout::Root;
use sum::config::sites;
use sum::render::caddy::{self, Served};
use sum::render::generator::{self, Log};
use sum::site_state::PreviousStatic;

/// The exposure budget of every generated service (issue target: 2.0).
const MAX_EXPOSURE: f64 = 2.0;

/// Generates the `full` and `basic` golden fixtures into one root laid out
/// for `systemd-analyze --root`: our units in etc/systemd/system, systemd's
/// own units beside them, and the venv commands a deploy would have built.
fn verify_root() -> (tempfile::TempDir, Vec<String>) {
    let root = tempfile::tempdir().unwrap();
    let sites_root = tempfile::tempdir().unwrap();
    for case in ["basic", "full"] {
        common::copy_tree(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/golden")
                .join(case)
                .join("sites"),
            &sites_root.path().join("etc/sum/sites"),
        );
    }
    let units_dir = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&units_dir).unwrap();
    let outcome = generator::run(
        &Root::new(sites_root.path()),
        &units_dir,
        &mut Log::Capture(Vec::new()),
    );
    assert_eq!(outcome.generated_sites, 2);
    for system_dir in ["/usr/lib/systemd/system", "/lib/systemd/system"] {
        if Path::new(system_dir).is_dir() {
            common::copy_tree(
                Path::new(system_dir),
                &root.path().join("usr/lib/systemd/system"),
            );
            break;
        }
    }
    // The units the package ships, which the generated ones refer to.
    for shipped in [
        "sum-sites.target",
        "sum-backup@.service",
        "sum-deploy@.service",
        "sum-alert@.service",
        "sum-probe@.service",
    ] {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("units")
                .join(shipped),
            root.path().join("usr/lib/systemd/system").join(shipped),
        )
        .unwrap();
    }
    std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.path().join("bin")).unwrap();
    // The processes of [processes] run through /bin/sh.
    for bin in [
        "usr/bin/sum-backup",
        "usr/bin/sum-deploy",
        "usr/bin/sumctl",
        "bin/sh",
    ] {
        std::fs::write(root.path().join(bin), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            root.path().join(bin),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let loaded = sites::load_all(&Root::new(sites_root.path())).unwrap();
    for site in &loaded.sites {
        let bin = root.path().join(format!("srv/sum/{}/venv/bin", site.name));
        std::fs::create_dir_all(&bin).unwrap();
        for cmd in ["gunicorn", "celery"] {
            std::fs::write(bin.join(cmd), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(bin.join(cmd), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
    }
    let mut units: Vec<String> = std::fs::read_dir(&units_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("sum-") && !n.ends_with(".d"))
        .collect();
    units.sort();
    (root, units)
}

#[test]
fn systemd_analyze_verify_accepts_every_generated_unit() {
    if !common::require_tool("systemd-analyze") {
        return;
    }
    let (root, units) = verify_root();
    assert_eq!(units.len(), 12, "{units:?}");
    let paths: Vec<String> = units
        .iter()
        .map(|u| format!("etc/systemd/system/{u}"))
        .collect();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "--generators=no", "--root=."])
        .args(&paths)
        .current_dir(root.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{err}"
    );
    assert!(
        err.trim().is_empty(),
        "systemd-analyze verify warned:\n{err}"
    );

    // The shipped deploy template, as an instance.
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "--generators=no", "--root=."])
        .arg("usr/lib/systemd/system/sum-deploy@.service")
        .current_dir(root.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "sum-deploy@.service:\n{err}"
    );

    // The check can fail: a unit whose command is missing is reported.
    std::fs::remove_file(root.path().join("srv/sum/acme/venv/bin/gunicorn")).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "--generators=no", "--root=."])
        .arg("etc/systemd/system/sum-gunicorn@acme.service")
        .current_dir(root.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// `systemd-analyze security --offline=true` of one unit file under `root`.
fn exposure(root: &Path, unit_path: &str) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", "--root=."])
        .arg(unit_path)
        .current_dir(root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|l| l.split(": ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level for {unit_path}:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Prints the exposure table (copied into docs/hardening.md) and gates it.
#[test]
fn systemd_analyze_security_is_within_budget() {
    if !common::require_tool("systemd-analyze") {
        return;
    }
    let (root, units) = verify_root();
    let mut checked = 0;
    for unit in units.iter().filter(|u| u.ends_with(".service")) {
        let score = exposure(root.path(), &format!("etc/systemd/system/{unit}"));
        println!("exposure {unit}: {score}");
        assert!(
            score <= MAX_EXPOSURE,
            "{unit} scores {score} > {MAX_EXPOSURE}"
        );
        checked += 1;
    }
    assert_eq!(checked, 6);

    // The shipped alert and probe templates, which run as root.
    for shipped in ["sum-alert@.service", "sum-probe@.service"] {
        let score = exposure(root.path(), &format!("usr/lib/systemd/system/{shipped}"));
        println!("exposure {shipped}: {score}");
        assert!(score <= 3.0, "{shipped} scores {score} > 3.0");
    }
}

fn as_caddy(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new("runuser")
        .args(["-u", "caddy", "--", "caddy"])
        .args(args)
        .current_dir(cwd)
        .env("HOME", cwd)
        .env("XDG_DATA_HOME", cwd.join("data"))
        .env("XDG_CONFIG_HOME", cwd.join("config"))
        .output()
        .unwrap()
}

#[test]
fn caddy_validates_every_snippet_next_to_the_admins_caddyfile() {
    if !common::require_tool("caddy") || !common::require_tool("runuser") {
        return;
    }
    let dir = caddy_dir();
    let snippets = dir.path().join("snippets");
    std::fs::create_dir(&snippets).unwrap();
    let mut count = 0;
    for case in ["basic", "full", "mixed"] {
        let root = tempfile::tempdir().unwrap();
        common::copy_tree(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/golden")
                .join(case)
                .join("sites"),
            &root.path().join("etc/sum/sites"),
        );
        for site in sites::load_all(&Root::new(root.path())).unwrap().sites {
            // One site may be served only once, so each state gets its own run.
            let home = format!("/srv/sum/{}", site.name);
            let second_deploy = Served {
                static_dir: format!("{home}/releases/20261203T100000Z-bbbbbbb/collect_static"),
                previous_static: Some(PreviousStatic {
                    release: "20261202T090000Z-aaaaaaa".into(),
                    static_dir: format!("{home}/releases/20261202T090000Z-aaaaaaa/collect_static"),
                }),
                ..Served::defaults(&site, true)
            };
            for (state, served) in [
                ("new", Served::defaults(&site, false)),
                ("deployed", Served::defaults(&site, true)),
                ("previous", second_deploy),
            ] {
                let text = caddy::snippet(&site, &served).unwrap();
                let name = format!("{case}-{}-{state}.caddy", site.name);
                std::fs::write(snippets.join(&name), &text).unwrap();
                let rootfile = dir.path().join("Caddyfile");
                let admin = dir.path().join("admin.Caddyfile");
                std::fs::write(&admin, ":80 {\n\trespond \"admin\"\n}\n").unwrap();
                std::fs::write(
                    &rootfile,
                    format!(
                        "import {}\nimport {}\n",
                        admin.display(),
                        snippets.join(&name).display()
                    ),
                )
                .unwrap();
                let out = as_caddy(
                    &[
                        "validate",
                        "--config",
                        &rootfile.to_string_lossy(),
                        "--adapter",
                        "caddyfile",
                    ],
                    dir.path(),
                );
                assert!(
                    out.status.success(),
                    "caddy validate rejected {name}:\n{text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                count += 1;
            }
        }
    }
    assert_eq!(count, 9);
}

#[test]
fn caddy_adapts_the_snippet_to_what_the_spec_asks() {
    if !common::require_tool("caddy") || !common::require_tool("runuser") {
        return;
    }
    let dir = caddy_dir();
    let root = common::root_with_sites(&[(
        "acme.toml",
        "domain = \"acme.example.com\"\naliases = [\"www.acme.example.com\"]\n[git]\nurl = \"https://x.example/a.git\"\n",
    )]);
    let site = sites::load_all(&Root::new(root.path()))
        .unwrap()
        .sites
        .remove(0);
    let text = caddy::snippet(&site, &Served::defaults(&site, true)).unwrap();
    let file = dir.path().join("acme.caddy");
    std::fs::write(&file, &text).unwrap();
    let out = as_caddy(
        &[
            "adapt",
            "--config",
            &file.to_string_lossy(),
            "--adapter",
            "caddyfile",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "\"dial\":\"unix//run/sum/acme/gunicorn.sock\"",
        "\"try_duration\":30000000000",
        "\"Strict-Transport-Security\":[\"max-age=31536000\"]",
        "\"encodings\":{\"gzip\":{},\"zstd\":{}}",
        "\"try_files\":[\"/srv/sum/acme/maintenance\"]",
        "\"Retry-After\":[\"120\"]",
        "\"root\":\"/srv/sum/acme/static\"",
        "\"root\":\"/srv/sum/acme/media\"",
        "\"path_regexp\":{\"pattern\":\"[^/]\\\\.[0-9a-f]{12}(\\\\.[^/.]+)?$\"}",
        "\"Cache-Control\":[\"public, max-age=31536000, immutable\"]",
        "\"Cache-Control\":[\"public, max-age=60, must-revalidate\"]",
        "\"Cache-Control\":[\"public, max-age=3600\"]",
        "\"delete\":[\"Cache-Control\"]",
        "\"Location\":[\"https://acme.example.com{http.request.uri}\"]",
        "\"status_code\":301",
    ] {
        assert!(
            json.contains(needle),
            "adapted config lacks {needle}:\n{json}"
        );
    }
}

/// Issue 11, part 8: right after a deploy, pages the previous release
/// rendered still ask for its hashed CSS; the live release's files win.
#[test]
fn caddy_serves_the_previous_releases_static_files_after_the_live_ones() {
    if !common::require_tool("caddy") || !common::require_tool("curl") {
        return;
    }
    let dir = caddy_dir();
    let root = common::root_with_sites(&[(
        "acme.toml",
        "domain = \"acme.localhost\"\n[git]\nurl = \"https://x.example/a.git\"\n",
    )]);
    let site = sites::load_all(&Root::new(root.path()))
        .unwrap()
        .sites
        .remove(0);
    let release = |name: &str, files: &[(&str, &str)]| {
        let static_dir = dir
            .path()
            .join("releases")
            .join(name)
            .join("collect_static");
        std::fs::create_dir_all(static_dir.join("css")).unwrap();
        for (file, body) in files {
            std::fs::write(static_dir.join(file), body).unwrap();
        }
        for d in [
            dir.path().join("releases"),
            dir.path().join("releases").join(name),
        ] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        static_dir
    };
    let old = release(
        "r1",
        &[
            ("css/main.309e4bcbd0d4.css", "old main"),
            ("css/site.css", "old site"),
        ],
    );
    let new = release(
        "r2",
        &[
            ("css/main.5a1c2b3d4e5f.css", "new main"),
            ("css/site.css", "new site"),
        ],
    );
    let served = Served {
        static_dir: new.display().to_string(),
        previous_static: Some(PreviousStatic {
            release: "r1".into(),
            static_dir: old.display().to_string(),
        }),
        ..Served::defaults(&site, true)
    };
    let caddy = RunningCaddy::start(dir.path(), &caddy::snippet(&site, &served).unwrap());
    assert_eq!(
        caddy.get("/static/css/main.5a1c2b3d4e5f.css"),
        (200, "new main".into())
    );
    assert_eq!(
        caddy.get("/static/css/main.309e4bcbd0d4.css"),
        (200, "old main".into()),
        "the previous release's file"
    );
    assert_eq!(
        caddy.get("/static/css/site.css"),
        (200, "new site".into()),
        "the live release's file wins"
    );
    assert_eq!(caddy.get("/static/css/none.css").0, 404);
    // Pruned: its files are gone, the live ones still served.
    std::fs::remove_dir_all(dir.path().join("releases/r1")).unwrap();
    assert_eq!(caddy.get("/static/css/main.309e4bcbd0d4.css").0, 404);
    assert_eq!(caddy.get("/static/css/site.css"), (200, "new site".into()));
}
