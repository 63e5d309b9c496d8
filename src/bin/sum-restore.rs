//! sum-restore: load a verified backup into a site's database, and its media
//! archive into the site's media directory. See sum-restore(8).

use std::process::ExitCode;

use clap::Parser;
use sum::backup::restore::{Media, Request};
use sum::backup::restore_command;
use sum::config::layout::Root;
use sum::system::failure::Exit;

#[derive(Parser)]
#[command(
    name = "sum-restore",
    version,
    about = "Restore a site's database, and its media, from a verified backup"
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
    /// Also restore the backup's media archive into the site's media directory
    #[arg(long, conflicts_with = "media_only")]
    media: bool,
    /// Restore only the backup's media archive, leaving the database alone
    #[arg(long = "media-only")]
    media_only: bool,
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
        media: match (cli.media, cli.media_only) {
            (_, true) => Media::Only,
            (true, false) => Media::Also,
            (false, false) => Media::No,
        },
    };
    let confirmed = cli.confirmed;
    ExitCode::from(restore_command::run(
        &Root::from_env(),
        &cli.site,
        &req,
        confirmed,
        &mut sum::system::journal::stdout(),
        &mut sum::system::journal::stderr(),
    ))
}
