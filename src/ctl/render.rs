//! `sumctl render <site>`: prints every unit the generator makes for a site
//! and its Caddy snippet, exactly as they would be written.

use std::io::Write;

use crate::config::layout::{Root, CADDY_RUN_DIR};
use crate::config::site::{check_site_name, Site};
use crate::config::sites;
use crate::render::caddy;
use crate::render::units;
use crate::system::failure::{exit_code, Failure};

/// `sumctl render <site>`.
pub fn render(root: &Root, name: &str, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let result = render_site(root, name, out);
    exit_code(result, err)
}

fn render_site(root: &Root, name: &str, out: &mut dyn Write) -> Result<(), Failure> {
    let site = load_named(root, name)?;
    print_units(&site, out);
    let text = caddy::snippet(&site, &caddy::Served::from_disk(root, &site))
        .map_err(|e| Failure::failed(format!("site {name}: {e}")))?;
    let _ = write!(out, "# {CADDY_RUN_DIR}/{}.caddy\n{text}", site.name);
    Ok(())
}

/// The units, drop-ins and `.wants/` links, each under the path the
/// generator gives it.
fn print_units(site: &Site, out: &mut dyn Write) {
    let rendered = units::render(site);
    for u in &rendered.units {
        let _ = writeln!(out, "# /run/systemd/generator/{}\n{}", u.name, u.contents);
    }
    for (dir_name, file, contents) in &rendered.dropins {
        let _ = writeln!(
            out,
            "# /run/systemd/generator/{dir_name}/{file}\n{contents}"
        );
    }
    for (target, unit) in &rendered.wants {
        let _ = writeln!(
            out,
            "# /run/systemd/generator/{target}.wants/{unit} -> ../{unit}\n"
        );
    }
}

/// The site file of `name`, with a hint to create it when there is none.
fn load_named(root: &Root, name: &str) -> Result<Site, Failure> {
    check_site_name(name).map_err(Failure::usage)?;
    let path = root.sites_dir().join(format!("{name}.toml"));
    if !path.exists() {
        return Err(Failure::usage(format!(
            "no site `{name}`: {} does not exist (create it with `sumctl new {name} --domain … --git …`)",
            path.display()
        )));
    }
    sites::load_file(&path).map_err(|e| Failure::usage(e.to_string()))
}
