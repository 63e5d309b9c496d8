//! Prometheus metrics without a daemon of our own: the text exposition
//! format, written atomically into node_exporter's textfile-collector
//! directory (`/var/lib/prometheus/node-exporter` on Debian), which
//! node_exporter reads at every scrape.
//!
//! One file per site and per program (`sum-<site>-backup.prom`,
//! `sum-<site>-deploy.prom`): each program owns its file, so two programs
//! never merge into one file, and removing a site removes its files and so
//! its series. Nothing is written when the directory does not exist
//! (node_exporter is not installed): metrics are optional.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Where Debian's prometheus-node-exporter reads textfiles.
pub const DEFAULT_DIR: &str = "/var/lib/prometheus/node-exporter";
/// Overrides [`DEFAULT_DIR`] (a drop-in `Environment=` on the units).
pub const DIR_ENV: &str = "SUM_METRICS_DIR";

/// The kinds this module writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// One metric family: its name, help text, kind and samples (labels, value).
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub samples: Vec<(Vec<(String, String)>, f64)>,
}

impl Family {
    pub fn gauge(name: &str, help: &str) -> Family {
        Family {
            name: name.into(),
            help: help.into(),
            kind: Kind::Gauge,
            samples: Vec::new(),
        }
    }
    pub fn counter(name: &str, help: &str) -> Family {
        Family {
            kind: Kind::Counter,
            ..Family::gauge(name, help)
        }
    }
    /// Adds a sample with these labels.
    pub fn sample(mut self, labels: &[(&str, &str)], value: f64) -> Family {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples.push((labels, value));
        self
    }
}

/// Whether `name` is a valid metric or label name (`[a-zA-Z_:][a-zA-Z0-9_:]*`;
/// label names may not contain `:`).
pub fn valid_name(name: &str, label: bool) -> bool {
    let mut chars = name.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (!label && c == ':');
    let ok_rest = |c: char| c.is_ascii_alphanumeric() || c == '_' || (!label && c == ':');
    chars.next().is_some_and(ok_first) && chars.all(ok_rest)
}

/// A label value as the exposition format quotes it: `\`, `"` and newline escaped.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escaping: `\` and newline.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value: integers without a fraction, NaN and infinities as
/// Prometheus spells them.
fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The families in the text exposition format. Panics on an invalid metric
/// or label name: names are the program's own constants, never input.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        assert!(valid_name(&f.name, false), "invalid metric name {}", f.name);
        let kind = match f.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help));
        let _ = writeln!(out, "# TYPE {} {kind}", f.name);
        for (labels, v) in &f.samples {
            let mut l = String::new();
            for (i, (k, val)) in labels.iter().enumerate() {
                assert!(valid_name(k, true), "invalid label name {k}");
                if i > 0 {
                    l.push(',');
                }
                let _ = write!(l, "{k}=\"{}\"", escape_label_value(val));
            }
            if l.is_empty() {
                let _ = writeln!(out, "{} {}", f.name, value(*v));
            } else {
                let _ = writeln!(out, "{}{{{l}}} {}", f.name, value(*v));
            }
        }
    }
    out
}

/// The textfile directory: `SUM_METRICS_DIR`, or Debian's default.
pub fn dir() -> PathBuf {
    std::env::var_os(DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

/// The file of one site and program: `sum-<site>-<program>.prom`.
pub fn file_name(site: &str, program: &str) -> String {
    format!("sum-{site}-{program}.prom")
}

/// Writes `families` as `dir/name`, atomically: a temporary file in the
/// same directory (whose name node_exporter ignores: it reads `*.prom`
/// only), fsynced, then renamed over the old one, so a scrape sees the old
/// file or the new one, never half of one. Ok(false) when `dir` does not
/// exist: nothing is written.
pub fn write(dir: &Path, name: &str, families: &[Family]) -> std::io::Result<bool> {
    if !dir.is_dir() {
        return Ok(false);
    }
    let text = render(families);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs_err::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        // Readable by node_exporter, which does not run as root.
        fs_err::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        fs_err::rename(&tmp, dir.join(name))
    })();
    if result.is_err() {
        let _ = fs_err::remove_file(&tmp);
    }
    result.map(|()| true)
}

/// Removes every file of `site` (`sum-<site>-*.prom`), so that its series
/// disappear; returns the names removed.
pub fn remove_site(dir: &Path, site: &str) -> std::io::Result<Vec<String>> {
    let mut removed = Vec::new();
    if !dir.is_dir() {
        return Ok(removed);
    }
    let prefix = format!("sum-{site}-");
    for entry in fs_err::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        // A site name has no '-' at its end and program names have none,
        // so `sum-acme-` never matches a file of `acme-blog`'s: the rest
        // must be one program name.
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let Some(program) = rest.strip_suffix(".prom") else {
            continue;
        };
        if !program.is_empty() && program.chars().all(|c| c.is_ascii_lowercase()) {
            fs_err::remove_file(dir.join(&name))?;
            removed.push(name);
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn families_render_in_the_exposition_format() {
        let text = render(&[
            Family::gauge("sum_backup_last_success", "1 if the last backup succeeded.")
                .sample(&[("site", "acme")], 1.0),
            Family::counter("sum_deploys_total", "Deploys, by outcome.")
                .sample(&[("site", "acme"), ("outcome", "success")], 3.0)
                .sample(&[("site", "acme"), ("outcome", "rolled_back")], 1.0),
            Family::gauge("sum_backup_duration_seconds", "How long.\nTwo lines")
                .sample(&[("site", "a\"b\\c\nd")], 1.25),
        ]);
        assert_eq!(
            text,
            "# HELP sum_backup_last_success 1 if the last backup succeeded.\n\
             # TYPE sum_backup_last_success gauge\n\
             sum_backup_last_success{site=\"acme\"} 1\n\
             # HELP sum_deploys_total Deploys, by outcome.\n\
             # TYPE sum_deploys_total counter\n\
             sum_deploys_total{site=\"acme\",outcome=\"success\"} 3\n\
             sum_deploys_total{site=\"acme\",outcome=\"rolled_back\"} 1\n\
             # HELP sum_backup_duration_seconds How long.\\nTwo lines\n\
             # TYPE sum_backup_duration_seconds gauge\n\
             sum_backup_duration_seconds{site=\"a\\\"b\\\\c\\nd\"} 1.25\n"
        );
    }

    #[test]
    fn values_are_spelled_as_prometheus_reads_them() {
        assert_eq!(value(1796520082.0), "1796520082");
        assert_eq!(value(0.5), "0.5");
        assert_eq!(value(f64::NAN), "NaN");
        assert_eq!(value(f64::INFINITY), "+Inf");
        assert_eq!(value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn names_follow_the_data_model() {
        assert!(valid_name("sum_backup_size_bytes", false));
        assert!(valid_name("a:b", false));
        assert!(!valid_name("a:b", true));
        assert!(!valid_name("9lives", false));
        assert!(!valid_name("", false));
        assert!(!valid_name("sum-backup", false));
    }

    #[test]
    fn a_missing_directory_writes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("node-exporter");
        let f = [Family::gauge("x", "y").sample(&[], 1.0)];
        assert!(!write(&missing, "sum-acme-backup.prom", &f).unwrap());
        assert!(!missing.exists());
    }

    #[test]
    fn writes_replace_the_file_whole_and_leave_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let one = [Family::gauge("x", "y").sample(&[("site", "acme")], 1.0)];
        let two = [Family::gauge("x", "y").sample(&[("site", "acme")], 2.0)];
        assert!(write(d.path(), "sum-acme-backup.prom", &one).unwrap());
        assert!(write(d.path(), "sum-acme-backup.prom", &two).unwrap());
        let names: Vec<String> = fs_err::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["sum-acme-backup.prom"]);
        let text = fs_err::read_to_string(d.path().join("sum-acme-backup.prom")).unwrap();
        assert!(text.ends_with("x{site=\"acme\"} 2\n"), "{text}");
    }

    #[test]
    fn removing_a_site_removes_its_files_and_no_other_site_s() {
        let d = tempfile::tempdir().unwrap();
        for name in [
            "sum-acme-backup.prom",
            "sum-acme-deploy.prom",
            "sum-acme-blog-backup.prom",
            "node.prom",
            "sum-acme-backup.prom.bak",
        ] {
            fs_err::write(d.path().join(name), "").unwrap();
        }
        assert_eq!(
            remove_site(d.path(), "acme").unwrap(),
            ["sum-acme-backup.prom", "sum-acme-deploy.prom"]
        );
        let mut left: Vec<String> = fs_err::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "node.prom",
                "sum-acme-backup.prom.bak",
                "sum-acme-blog-backup.prom"
            ]
        );
    }

    /// The inverse of escape_label_value, as a reader of the format does it.
    fn unescape(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some(o) => out.push(o),
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    proptest! {
        #[test]
        fn any_label_value_stays_on_its_line_and_reads_back(v in any::<String>()) {
            let e = escape_label_value(&v);
            prop_assert!(!e.contains('\n'));
            // No unescaped quote can end the value early.
            let mut bs = 0usize;
            for c in e.chars() {
                if c == '"' { prop_assert!(bs % 2 == 1, "bare quote in {e:?}"); }
                if c == '\\' { bs += 1 } else { bs = 0 }
            }
            prop_assert_eq!(unescape(&e), v);
        }

        #[test]
        fn a_rendered_sample_is_one_line_per_sample(
            values in proptest::collection::vec(("[ -~\n]{0,20}", -1e12f64..1e12), 1..6),
        ) {
            let mut f = Family::gauge("sum_x", "h");
            for (label, v) in &values {
                f = f.sample(&[("site", label)], *v);
            }
            let text = render(&[f]);
            prop_assert_eq!(text.lines().count(), 2 + values.len());
        }
    }
}
