//! sum-restore: load a verified backup into a site's database. See sum-restore(8).

use std::process::ExitCode;

use clap::Parser;
use sum::backup::restore::{self, Request};
use sum::config::layout::Root;
use sum::system::failure::Exit;

#[derive(Parser)]
#[command(
    name = "sum-restore",
    version,
    about = "Restore a site's database from a verified backup"
)]
struct Cli {
    /// The site (the name of /etc/sum/sites/<site>.toml)
    site: String,
    /// A backup file, `latest` for the newest verified backup, or
    /// `offsite:latest` / `offsite:NAME` for an off-host copy
    backup: String,
    /// Confirm that the site's database is to be replaced (not needed with --into)
    #[arg(long = "i-know-this-will-overwrite")]
    confirmed: bool,
    /// Restore into this (scratch) database instead, leaving the live one alone
    #[arg(long, value_name = "DBNAME")]
    into: Option<String>,
}

fn main() -> ExitCode {
    sum::system::journal::log_panics_as_errors();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                Exit::Usage.code()
            } else {
                0
            });
        }
    };
    let req = Request {
        what: &cli.backup,
        into: cli.into.as_deref(),
    };
    let confirmed = cli.confirmed;
    ExitCode::from(restore::run(
        &Root::from_env(),
        &cli.site,
        &req,
        confirmed,
        &mut sum::system::journal::stdout(),
        &mut sum::system::journal::stderr(),
    ))
}
