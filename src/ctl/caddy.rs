//! `sumctl caddy-render`: the step `caddy.service` runs before start and
//! reload, writing every site's snippet.

use std::io::Write;

use crate::config::layout::Root;
use crate::render::caddy;
use crate::system::failure::{exit_code, Failure};

/// `sumctl caddy-render`. A bad site file does not fail it: Caddy must go
/// on serving the good ones.
pub fn caddy_render(root: &Root, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let result = render_snippets(root, out, err);
    exit_code(result, err)
}

fn render_snippets(root: &Root, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), Failure> {
    let o = caddy::render_all(root)
        .map_err(|e| Failure::failed(format!("caddy render failed: {e}")))?;
    for p in &o.problems {
        let _ = writeln!(err, "{p}");
    }
    for k in &o.kept {
        let _ = writeln!(
            err,
            "site {k}: its site file is invalid, so Caddy keeps serving its last good snippet"
        );
    }
    let _ = writeln!(
        out,
        "caddy snippets: {} rendered, {} removed, {} kept",
        o.written.len(),
        o.removed.len(),
        o.kept.len()
    );
    Ok(())
}
