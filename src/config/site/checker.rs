//! Collecting the errors of one site file, each with its file:line:col,
//! key, problem and what is allowed; toml's own errors put in those terms.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::raw::S;
use super::rules::Rule;
use super::SiteError;

/// Collects errors against one file's text.
pub(super) struct Checker<'a> {
    pub(super) file: &'a Path,
    pub(super) text: &'a str,
    pub(super) errors: Vec<SiteError>,
}

impl Checker<'_> {
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    pub(super) fn push(&mut self, span: Range<usize>, key: &str, problem: String, allowed: &str) {
        let (line, col) = self.position(span.start);
        self.errors.push(SiteError {
            file: self.file.to_path_buf(),
            line,
            col,
            key: key.to_string(),
            problem,
            allowed: allowed.to_string(),
        });
    }

    /// A string value checked by `rule`, or `default` when absent.
    pub(super) fn string(
        &mut self,
        value: S<String>,
        key: &str,
        default: impl FnOnce() -> String,
        rule: &Rule,
    ) -> String {
        match value {
            None => default(),
            Some(v) => {
                let span = v.span();
                let v = v.into_inner();
                if let Err(problem) = rule.check(&v) {
                    self.push(span, key, problem, rule.allowed);
                }
                v
            }
        }
    }

    pub(super) fn strings(
        &mut self,
        value: S<Vec<Spanned<String>>>,
        key: &str,
        rule: &Rule,
    ) -> Vec<String> {
        let Some(list) = value else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        for item in list.into_inner() {
            let span = item.span();
            let v = item.into_inner();
            if let Err(problem) = rule.check(&v) {
                self.push(span, key, problem, rule.allowed);
            } else if out.contains(&v) {
                self.push(span, key, format!("`{v}` is listed twice"), rule.allowed);
            }
            out.push(v);
        }
        out
    }

    pub(super) fn number(
        &mut self,
        value: S<i64>,
        key: &str,
        default: u32,
        min: u32,
        max: u32,
    ) -> u32 {
        let Some(v) = value else {
            return default;
        };
        let span = v.span();
        let n = *v.get_ref();
        if n < i64::from(min) || n > i64::from(max) {
            self.push(
                span,
                key,
                format!("{n} is out of range"),
                &format!("expected a whole number from {min} to {max}"),
            );
            return default;
        }
        n as u32
    }

    pub(super) fn flag(value: S<bool>, default: bool) -> bool {
        value.map_or(default, Spanned::into_inner)
    }

    /// A syntax, type or unknown-key error of toml/serde, in our words.
    pub(super) fn push_toml_error(&mut self, e: serde_path_to_error::Error<toml::de::Error>) {
        // Spanned<T> adds a private component to serde's path; drop it.
        let key = e
            .path()
            .to_string()
            .split('.')
            .filter(|part| !part.starts_with("$__serde_spanned"))
            .collect::<Vec<_>>()
            .join(".");
        let inner = e.into_inner();
        let span = inner.span().unwrap_or(0..0);
        let (key, problem, allowed) = describe_toml_error(&key, inner.message());
        self.push(span, &key, problem, &allowed);
    }
}

/// Turns toml/serde's message into key, problem and what is allowed.
fn describe_toml_error(path: &str, message: &str) -> (String, String, String) {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let key = if path.is_empty() || path == "." {
            field.to_string()
        } else if path == field || path.ends_with(&format!(".{field}")) {
            path.to_string()
        } else {
            format!("{path}.{field}")
        };
        let expected = expected.trim_start_matches(", ");
        let allowed = if expected.is_empty() {
            String::new()
        } else {
            format!("allowed here: {}", expected.trim_start_matches("expected "))
        };
        return (key, "unknown key".into(), allowed);
    }
    let key = if path.is_empty() || path == "." {
        "(syntax)".to_string()
    } else {
        path.to_string()
    };
    let allowed = match message.split_once(", expected ") {
        Some((_, exp)) => format!("expected {}", friendly_type(exp)),
        None => "expected TOML: `key = value` lines under [table] headers, strings in double quotes (see sum-site.toml(5))".to_string(),
    };
    let problem = message
        .split_once(", expected ")
        .map_or(message, |(p, _)| p)
        .to_string();
    (key, problem, allowed)
}

fn friendly_type(serde_expected: &str) -> &str {
    match serde_expected {
        "i64" => "a whole number",
        "a boolean" | "bool" => "true or false",
        "a string" => "a quoted string",
        "a sequence" => "a list such as [\"a\", \"b\"]",
        other => other,
    }
}
