//! `sum::config::envfile::parse` against systemd's own reading of an
//! `EnvironmentFile=`: what our deploy and backup read must be what gunicorn
//! gets.
//!
//! - The corpus `tests/fixtures/envfile-corpus/<case>.env` and our verdict on
//!   each, `<case>.expected`: the variables (sorted `NAME=value` lines, `\`,
//!   newline, tab and CR escaped as `\\`, `\n`, `\t`, `\r`) or
//!   `refused: line N: …`. `SUM_BLESS=1 cargo test --test it envfile_corpus::`
//!   rewrites them; review the diff. `tests/e2e/envfile.sh` runs every
//!   accepted case through the real systemd and compares with the same file.
//! - `systemd`, a model of systemd's parser (src/basic/env-file.c and the
//!   loading in src/core/execute.c) in both its 252 and 257 forms. Whatever
//!   `parse` accepts, from the corpus or from proptest, must give exactly what
//!   both models give.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use sum::config::envfile::{self, SyntaxError};

/// The parser of systemd's `EnvironmentFile=`, modelled from its source as of
/// 252 (Debian 12) and 257 (Debian 13), which differ in one place: a comment
/// line ending with a backslash continued onto the next line before 254.
mod systemd {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Version {
        V252,
        V257,
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum State {
        PreKey,
        Key,
        PreValue,
        Value,
        ValueEscape,
        Single,
        Double,
        DoubleEscape,
        Comment,
        CommentEscape,
    }

    const WHITESPACE: &[u8] = b" \t\n\r";
    const NEWLINE: &[u8] = b"\n\r";
    const COMMENTS: &[u8] = b"#;";
    const SHELL_NEED_ESCAPE: &[u8] = b"\"\\`$";

    /// The raw `(key, value)` pairs in the order systemd's parser hands them
    /// on, before any check of key or value.
    fn pairs(bytes: &[u8], version: Version) -> Vec<(Vec<u8>, Vec<u8>)> {
        use State::*;
        let mut out = Vec::new();
        let (mut key, mut value) = (Vec::new(), Vec::new());
        // Where the trailing blanks of the key and of an unquoted value begin.
        let (mut key_blank, mut value_blank): (Option<usize>, Option<usize>) = (None, None);
        let mut finish = |key: &mut Vec<u8>,
                          value: &mut Vec<u8>,
                          key_blank: Option<usize>,
                          value_blank: Option<usize>| {
            if let Some(n) = value_blank {
                value.truncate(n);
            }
            if let Some(n) = key_blank {
                key.truncate(n);
            }
            out.push((std::mem::take(key), std::mem::take(value)));
        };
        let mut state = PreKey;
        for &c in bytes {
            match state {
                PreKey => {
                    if COMMENTS.contains(&c) {
                        state = Comment;
                    } else if !WHITESPACE.contains(&c) {
                        state = Key;
                        key_blank = None;
                        key.push(c);
                    }
                }
                Key => {
                    if NEWLINE.contains(&c) {
                        state = PreKey;
                        key.clear();
                    } else if c == b'=' {
                        state = PreValue;
                        value_blank = None;
                    } else {
                        if !WHITESPACE.contains(&c) {
                            key_blank = None;
                        } else if key_blank.is_none() {
                            key_blank = Some(key.len());
                        }
                        key.push(c);
                    }
                }
                PreValue => {
                    if NEWLINE.contains(&c) {
                        state = PreKey;
                        finish(&mut key, &mut value, key_blank, None);
                    } else if c == b'\'' {
                        state = Single;
                    } else if c == b'"' {
                        state = Double;
                    } else if c == b'\\' {
                        state = ValueEscape;
                    } else if !WHITESPACE.contains(&c) {
                        state = Value;
                        value.push(c);
                    }
                }
                Value => {
                    if NEWLINE.contains(&c) {
                        state = PreKey;
                        finish(&mut key, &mut value, key_blank, value_blank);
                    } else if c == b'\\' {
                        state = ValueEscape;
                        value_blank = None;
                    } else {
                        if !WHITESPACE.contains(&c) {
                            value_blank = None;
                        } else if value_blank.is_none() {
                            value_blank = Some(value.len());
                        }
                        value.push(c);
                    }
                }
                ValueEscape => {
                    state = Value;
                    if !NEWLINE.contains(&c) {
                        value.push(c);
                    }
                }
                Single => {
                    if c == b'\'' {
                        state = PreValue;
                    } else {
                        value.push(c);
                    }
                }
                Double => {
                    if c == b'"' {
                        state = PreValue;
                    } else if c == b'\\' {
                        state = DoubleEscape;
                    } else {
                        value.push(c);
                    }
                }
                DoubleEscape => {
                    state = Double;
                    if SHELL_NEED_ESCAPE.contains(&c) {
                        value.push(c);
                    } else if c != b'\n' {
                        value.extend([b'\\', c]);
                    }
                }
                Comment => {
                    if c == b'\\' {
                        state = CommentEscape;
                    } else if NEWLINE.contains(&c) {
                        state = PreKey;
                    }
                }
                CommentEscape => {
                    state = match version {
                        Version::V252 => Comment,
                        Version::V257 if NEWLINE.contains(&c) => PreKey,
                        Version::V257 => Comment,
                    };
                }
            }
        }
        match state {
            Value => finish(&mut key, &mut value, key_blank, value_blank),
            PreValue | ValueEscape | Single | Double | DoubleEscape => {
                finish(&mut key, &mut value, key_blank, None)
            }
            PreKey | Key | Comment | CommentEscape => {}
        }
        out
    }

    /// systemd's UTF-8 check, which also refuses noncharacters.
    fn utf8(bytes: Vec<u8>) -> Option<String> {
        let s = String::from_utf8(bytes).ok()?;
        let nonchar = |c: char| {
            let u = u32::from(c);
            (0xFDD0..=0xFDEF).contains(&u) || u & 0xFFFE == 0xFFFE
        };
        (!s.chars().any(nonchar)).then_some(s)
    }

    fn valid_name(name: &str) -> bool {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    /// The variables a unit gets from a file with these bytes, or None when
    /// systemd refuses the file and the unit does not start.
    pub fn load(bytes: &[u8], version: Version) -> Option<Vec<(String, String)>> {
        // read_full_file() without a size refuses an embedded NUL.
        if bytes.contains(&0) {
            return None;
        }
        let mut env: Vec<(String, String)> = Vec::new();
        for (key, value) in pairs(bytes, version) {
            // load_env_file_push(): invalid UTF-8 fails the whole file.
            let (key, value) = (utf8(key)?, utf8(value)?);
            // strv_env_replace_consume(): the later value wins.
            match env.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => env.push((key, value)),
            }
        }
        // strv_env_clean_with_callback(): invalid names are logged and dropped.
        env.retain(|(k, _)| valid_name(k));
        Some(env)
    }
}

use systemd::Version::{V252, V257};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/envfile-corpus")
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut cases: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "env"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_str().unwrap().to_string();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    cases.sort();
    assert!(cases.len() > 50, "the corpus is missing");
    cases
}

/// The value as one line: the escapes tests/e2e/envfile.sh applies too.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\t', "\\t")
        .replace('\r', "\\r")
}

fn render(verdict: &Result<envfile::Env, SyntaxError>) -> String {
    match verdict {
        Err(e) => format!("refused: {e}\n"),
        Ok(env) => {
            let mut lines: Vec<String> = env
                .iter()
                .map(|(k, v)| format!("{k}={}", escape(v)))
                .collect();
            lines.sort();
            lines.iter().map(|l| format!("{l}\n")).collect()
        }
    }
}

fn as_map(env: &[(String, String)]) -> BTreeMap<&str, &str> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Names systemd sets for every service itself: the e2e check could not tell
/// a corpus variable from them.
const SET_BY_SYSTEMD: &[&str] = &[
    "PATH",
    "LANG",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "INVOCATION_ID",
    "SYSTEMD_EXEC_PID",
    "JOURNAL_STREAM",
    "TERM",
    "MEMORY_PRESSURE_WATCH",
    "MEMORY_PRESSURE_WRITE",
];

#[test]
fn corpus_verdicts_match_the_expected_files() {
    let bless = std::env::var_os("SUM_BLESS").is_some();
    let mut wrong = Vec::new();
    for (name, bytes) in corpus() {
        let verdict = envfile::parse(&bytes);
        if let Ok(env) = &verdict {
            for (k, _) in env {
                assert!(
                    !SET_BY_SYSTEMD.contains(&k.as_str()),
                    "{name}.env sets {k}, which systemd sets itself"
                );
            }
        }
        let rendered = render(&verdict);
        let path = corpus_dir().join(format!("{name}.expected"));
        if bless {
            std::fs::write(&path, &rendered).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (SUM_BLESS=1 writes it)", path.display()));
        if expected != rendered {
            wrong.push(format!(
                "{name}:\n  expected: {expected:?}\n  parse:    {rendered:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "SUM_BLESS=1 rewrites the expected files\n{}",
        wrong.join("\n")
    );
    // No expected file without its case.
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "expected") {
            assert!(
                path.with_extension("env").exists(),
                "{} has no .env",
                path.display()
            );
        }
    }
}

#[test]
fn corpus_cases_we_accept_mean_the_same_to_both_systemd_models() {
    let mut accepted = 0;
    for (name, bytes) in corpus() {
        let Ok(ours) = envfile::parse(&bytes) else {
            continue;
        };
        accepted += 1;
        for version in [V252, V257] {
            let theirs = systemd::load(&bytes, version)
                .unwrap_or_else(|| panic!("{name}: systemd {version:?} refuses the file"));
            assert_eq!(
                as_map(&ours),
                as_map(&theirs),
                "{name}: systemd {version:?}"
            );
        }
    }
    assert!(accepted >= 25, "only {accepted} accepted cases");
}

/// Why some refusals exist: what systemd makes of those lines.
#[test]
fn refused_cases_are_where_systemd_differs_from_a_reader() {
    let load = |case: &str, version| {
        let bytes = std::fs::read(corpus_dir().join(format!("{case}.env"))).unwrap();
        assert!(envfile::parse(&bytes).is_err(), "{case} is accepted");
        systemd::load(&bytes, version)
    };
    let vars = |list: &[(&str, &str)]| -> Option<Vec<(String, String)>> {
        Some(
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    for version in [V252, V257] {
        // The bug of issue 11: systemd drops the variable, we used to keep it.
        assert_eq!(load("export", version), vars(&[("A", "1")]));
        assert_eq!(
            load("inline-comment", version),
            vars(&[("A", "1 # comment")])
        );
        assert_eq!(
            load("unquoted-backslash", version),
            vars(&[("A", "C:path")])
        );
        assert_eq!(
            load("unquoted-continuation", version),
            vars(&[("A", "onetwo")])
        );
        assert_eq!(
            load("text-after-double-quote", version),
            vars(&[("A", "xy")])
        );
        assert_eq!(load("comment-after-quote", version), vars(&[("A", "x# c")]));
        assert_eq!(load("bom", version), vars(&[]));
        assert_eq!(load("no-equals", version), vars(&[("A", "1")]));
        assert_eq!(
            load("unterminated-single", version),
            vars(&[("A", "x\nB=2\n")])
        );
        assert_eq!(load("lone-cr", version), vars(&[("A", "1"), ("B", "2")]));
        for unit_fails in ["nul", "invalid-utf8", "noncharacter-fffe", "overlong-utf8"] {
            assert_eq!(load(unit_fails, version), None, "{unit_fails}");
        }
    }
    // The one difference between the versions.
    assert_eq!(load("comment-backslash", V252), vars(&[]));
    assert_eq!(load("comment-backslash", V257), vars(&[("A", "1")]));
}

/// Renders variables as a `.env` that `parse` must read back unchanged.
fn write_env(env: &[(String, String)]) -> String {
    env.iter()
        .map(|(k, v)| {
            if v.contains('\'') {
                let mut quoted = String::new();
                for c in v.chars() {
                    if matches!(c, '"' | '\\' | '`' | '$') {
                        quoted.push('\\');
                    }
                    quoted.push(c);
                }
                format!("{k}=\"{quoted}\"\n")
            } else {
                format!("{k} = '{v}'\n")
            }
        })
        .collect()
}

/// Pieces of `.env` syntax, characters that are always refused included.
fn fragment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "A", "b_1", "9", "export ", "=", "==", " ", "\t", "'", "\"", "\\", "#", ";", "\n", "\n",
        "\r\n", "\r", "x", "é", "\u{fffe}", "\u{feff}", "$", "`", "\x1b", "-", ".", "\0",
    ])
}

fn regex(re: &str) -> impl Strategy<Value = String> {
    proptest::string::string_regex(re).unwrap()
}

/// `.env` lines as people write them, right and wrong: comments (ending in
/// a backslash or not), assignments with blanks, `export`, invalid names,
/// unquoted, single- and double-quoted values with escapes and line breaks,
/// text after the closing quote; LF or CRLF line ends.
fn envfile_text() -> impl Strategy<Value = String> {
    let blank = "[ \t]{0,2}";
    let unquoted = "[a-z #;'\"\\\\$=]{0,6}";
    let single = "'[a-z \n\"\\\\#]{0,6}'";
    let double = "\"([a-z \n'#$`]|\\\\[a-z\n\"\\\\$`'])*\"";
    let after_quote = "([ a-z'\"#]{1,2})?";
    let line = prop_oneof![
        regex(&format!("{blank}[#;][a-z #\\\\]{{0,6}}")),
        regex(&format!(
            "{blank}(export )?[A-Za-z_9][A-Za-z0-9_]{{0,2}}{blank}={blank}\
             ({unquoted}|{single}{after_quote}|{double}{after_quote}){blank}"
        )),
        Just(String::new()),
    ];
    let end = prop_oneof![4 => Just("\n"), 1 => Just("\r\n"), 1 => Just("")];
    prop::collection::vec((line, end), 0..8)
        .prop_map(|lines| lines.into_iter().map(|(l, e)| l + e).collect())
}

fn check_against_models(bytes: &[u8]) -> Result<(), TestCaseError> {
    let verdict = envfile::parse(bytes);
    match verdict {
        Ok(ours) => {
            for version in [V252, V257] {
                let Some(theirs) = systemd::load(bytes, version) else {
                    return Err(TestCaseError::fail(format!(
                        "systemd {version:?} refuses it"
                    )));
                };
                prop_assert_eq!(as_map(&ours), as_map(&theirs), "{:?}", version);
            }
            let mut names: Vec<&str> = ours.iter().map(|(k, _)| k.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            prop_assert_eq!(names.len(), ours.len(), "a name twice");
            for (_, v) in &ours {
                prop_assert!(!v.contains(['\r', '\0']), "{:?}", v);
            }
        }
        Err(e) => {
            let lines = 1 + bytes.iter().filter(|&&b| b == b'\n').count();
            prop_assert!(
                e.line >= 1 && e.line <= lines,
                "line {} of {}",
                e.line,
                lines
            );
            prop_assert!(!e.to_string().is_empty());
        }
    }
    // Deterministic.
    prop_assert_eq!(envfile::parse(bytes), envfile::parse(bytes));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_and_agree_with_systemd(
        bytes in prop::collection::vec(any::<u8>(), 0..200)
    ) {
        check_against_models(&bytes)?;
    }

    #[test]
    fn envfile_fragments_agree_with_systemd(
        parts in prop::collection::vec(fragment(), 0..40)
    ) {
        check_against_models(parts.concat().as_bytes())?;
    }

    #[test]
    fn structured_envfile_text_agrees_with_systemd(text in envfile_text()) {
        check_against_models(text.as_bytes())?;
    }

    #[test]
    fn arbitrary_text_agrees_with_systemd(text in "\\PC{0,120}") {
        check_against_models(text.as_bytes())?;
    }

    #[test]
    fn written_variables_read_back(
        env in prop::collection::btree_map(
            "[A-Za-z_][A-Za-z0-9_]{0,8}",
            "[^\\p{Cc}\u{feff}\u{fdd0}-\u{fdef}\u{fffe}\u{ffff}]{0,20}|[ a-z'\"\\\\`$\n\t#;=]{0,20}",
            0..8,
        )
    ) {
        let nonchar = |c: char| u32::from(c) & 0xFFFE == 0xFFFE;
        prop_assume!(!env.values().any(|v| v.contains(nonchar)));
        let env: Vec<(String, String)> = env.into_iter().collect();
        let text = write_env(&env);
        let read = match envfile::parse(text.as_bytes()) {
            Ok(read) => read,
            Err(e) => return Err(TestCaseError::fail(format!("{text:?}: {e}"))),
        };
        prop_assert_eq!(as_map(&read), as_map(&env), "{:?}", text);
        check_against_models(text.as_bytes())?;
    }
}
