//! Shell completions (sumctl(8), "COMPLETION"): the scripts the package
//! ships are the ones `sumctl` prints today, and Tab in a real bash
//! completes subcommands, switches and the names of the sites of the root.

use std::path::Path;
use std::process::Command;

const SUMCTL: &str = env!("CARGO_BIN_EXE_sumctl");

fn registration(shell: &str) -> String {
    let out = Command::new(SUMCTL)
        .env("COMPLETE", shell)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_shipped_scripts_are_what_sumctl_prints() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/completions");
    for (shell, file) in [
        ("bash", "sumctl.bash"),
        ("zsh", "_sumctl"),
        ("fish", "sumctl.fish"),
    ] {
        let shipped = std::fs::read_to_string(dir.join(file)).unwrap();
        assert_eq!(
            shipped,
            registration(shell),
            "packaging/completions/{file} is stale: run `COMPLETE={shell} target/debug/sumctl > packaging/completions/{file}`"
        );
        // The script calls the installed sumctl, not a build tree's.
        assert!(
            shipped.contains("\"sumctl\" --") || shipped.contains("sumctl --"),
            "{file}"
        );
        assert!(!shipped.contains("target/"), "{file}");
    }
}

/// What Tab offers in bash for `words`, the last one being completed.
fn bash_tab(root: &Path, words: &[&str]) -> Vec<String> {
    let script = root.join("sumctl.bash");
    std::fs::write(&script, registration("bash")).unwrap();
    let bin_dir = Path::new(SUMCTL).parent().unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let program = format!(
        ". '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={cword}\nCOMP_TYPE=9\n\
         _clap_complete_sumctl sumctl '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words[cword],
        words[cword - 1],
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(program)
        .env(
            "PATH",
            format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
        )
        .env("SUM_ROOT", root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn tab_in_bash_completes_subcommands_switches_and_site_names() {
    let dir = tempfile::tempdir().unwrap();
    let sites = dir.path().join("etc/sum/sites");
    std::fs::create_dir_all(&sites).unwrap();
    for name in ["acme", "alpha", "bakery"] {
        std::fs::write(sites.join(format!("{name}.toml")), "").unwrap();
    }
    // Not a site file: an editor's backup is not offered.
    std::fs::write(sites.join("acme.toml~"), "").unwrap();

    assert_eq!(
        bash_tab(dir.path(), &["sumctl", "status", "a"]),
        ["acme", "alpha"]
    );
    assert_eq!(
        bash_tab(dir.path(), &["sumctl", "rollback", "b"]),
        ["bakery"]
    );
    assert_eq!(bash_tab(dir.path(), &["sumctl", "mainte"]), ["maintenance"]);
    let switches = bash_tab(dir.path(), &["sumctl", "maintenance", "acme", ""]);
    assert!(
        ["on", "off", "status"]
            .iter()
            .all(|s| switches.contains(&s.to_string())),
        "{switches:?}"
    );
    // `new` names a site that does not exist yet: nothing to offer.
    assert_eq!(
        bash_tab(dir.path(), &["sumctl", "new", "a"]),
        Vec::<String>::new()
    );
}
