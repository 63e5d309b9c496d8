//! sum-backup: a verified PostgreSQL backup of one site. See sum-backup(8).

use std::process::ExitCode;

use clap::Parser;
use sum::backup::{self, Args};
use sum::config::layout::Root;
use sum::system::failure::Exit;

#[derive(Parser)]
#[command(
    name = "sum-backup",
    version,
    about = "Take a verified backup of a site's database"
)]
struct Cli {
    /// The site (the name of /etc/sum/sites/<site>.toml)
    site: String,
    /// List the site's backups, newest first, instead of taking one
    #[arg(long)]
    list: bool,
    /// With --list: print JSON
    #[arg(long, requires = "list")]
    json: bool,
    /// Show what retention would keep and delete, and why; take no backup and delete nothing
    #[arg(long, conflicts_with = "list")]
    dry_run: bool,
    /// The database really is much smaller now: record a backup that shrank as accepted, so it
    /// counts and later backups are compared with it
    #[arg(long, conflicts_with_all = ["list", "dry_run"])]
    accept_shrink: bool,
    /// Take no backup: copy to the off-host remote what it lacks, check it and apply its
    /// retention (after the remote was fixed, say)
    #[arg(long, conflicts_with_all = ["list", "dry_run", "accept_shrink"])]
    offsite_only: bool,
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
    let args = Args {
        site: &cli.site,
        list: cli.list,
        json: cli.json,
        dry_run: cli.dry_run,
        accept_shrink: cli.accept_shrink,
        offsite_only: cli.offsite_only,
    };
    ExitCode::from(backup::run(
        &Root::from_env(),
        &args,
        &mut sum::system::journal::stdout(),
        &mut sum::system::journal::stderr(),
    ))
}
