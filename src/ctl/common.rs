//! What several `sumctl` commands share: the site named on the command
//! line, JSON output and plain-text tables.

use std::io::Write;

use serde::Serialize;

use crate::config::layout::Root;
use crate::config::site::Site;
use crate::system::failure::Failure;

/// The site named on the command line (exit 2 when it is unknown or its
/// file is invalid).
pub(crate) fn load_site(root: &Root, name: &str) -> Result<Site, Failure> {
    crate::config::sites::load_site(root, name).map_err(Failure::usage)
}

/// `value` as pretty JSON on a line of its own.
pub(crate) fn json_out<T: Serialize>(value: &T, out: &mut dyn Write) {
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(value).expect("serializes")
    );
}

/// Left-aligned columns; the last column is not padded.
pub(crate) fn table(rows: &[Vec<String>], out: &mut dyn Write) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[c] - cell.chars().count() + 2;
                line.extend(std::iter::repeat(' ').take(pad));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// A header row of fixed titles.
pub(crate) fn header(titles: &[&str]) -> Vec<String> {
    titles.iter().map(|s| s.to_string()).collect()
}
