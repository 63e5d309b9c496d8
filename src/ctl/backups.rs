//! `sumctl backups <site> [--json]`: the site's backups, newest first, the
//! same list as `sum-backup --list`.

use std::io::Write;

use crate::backup::dump;
use crate::config::layout::Root;
use crate::ctl::common::load_site;
use crate::system::failure::{exit_code, Failure};

/// `sumctl backups <site> [--json]`.
pub fn backups(
    root: &Root,
    name: &str,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let result = list_backups(root, name, json, out);
    exit_code(result, err)
}

fn list_backups(root: &Root, name: &str, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let site = load_site(root, name)?;
    crate::backup::run::list_backups(root, &site, &dump::backups_dir(root, &site.name), json, out)
}
