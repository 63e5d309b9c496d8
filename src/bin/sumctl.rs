//! sumctl: the operator's front door to sum-golden-path. See sumctl(8).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sum::config::layout::Root;
use sum::ctl::{self, NewSite};
use sum::system::failure::Exit;

#[derive(Parser)]
#[command(
    name = "sumctl",
    version,
    about = "Run Django/Wagtail sites with systemd and Caddy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate site files without changing anything (all sites when none given)
    Check { files: Vec<PathBuf> },
    /// Print every unit the generator makes for a site, and its Caddy snippet
    Render { site: String },
    /// Write a commented site file and a .env skeleton with a fresh SECRET_KEY
    New {
        site: String,
        #[arg(long)]
        domain: String,
        #[arg(long)]
        git: String,
        /// Another host name redirected to the domain (repeatable)
        #[arg(long = "alias")]
        aliases: Vec<String>,
    },
    /// Write the Caddy snippets of every site (run by caddy.service before start and reload)
    CaddyRender,
    /// Live release, last verified backup, next backup and unit states
    Status {
        site: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List a site's backups, newest first
    Backups {
        site: String,
        #[arg(long)]
        json: bool,
    },
    /// Go back to an earlier release still on disk: swap, restart, smoke check
    Rollback {
        site: String,
        /// The release to go to: its name or a unique part of it (e.g. a short sha);
        /// default: the newest good release older than the live one
        #[arg(long, value_name = "RELEASE")]
        to: Option<String>,
    },
    /// List a site's releases on disk, newest first, with the live and last good ones
    Releases {
        site: String,
        #[arg(long)]
        json: bool,
    },
    /// Show a site's deploys and rollbacks, newest first
    History {
        site: String,
        #[arg(long)]
        json: bool,
        /// How many to show (0: all)
        #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 20)]
        limit: usize,
    },
}

fn main() -> ExitCode {
    sum::system::journal::log_panics_as_errors();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                Exit::Usage.code()
            } else {
                0
            });
        }
    };
    let root = Root::from_env();
    // Under systemd (the caddy-render step of caddy.service), errors and
    // warnings reach the journal at their priority.
    let (mut out, mut err) = (
        sum::system::journal::stdout(),
        sum::system::journal::stderr(),
    );
    let code = match &cli.command {
        Command::Check { files } => ctl::check(&root, files, &mut out, &mut err),
        Command::Render { site } => ctl::render(&root, site, &mut out, &mut err),
        Command::New {
            site,
            domain,
            git,
            aliases,
        } => ctl::new_site(
            &root,
            &NewSite {
                name: site,
                domain,
                git,
                aliases,
            },
            &mut out,
            &mut err,
        ),
        Command::CaddyRender => ctl::caddy_render(&root, &mut out, &mut err),
        Command::Status { site, json } => {
            ctl::status(&root, site.as_deref(), *json, &mut out, &mut err)
        }
        Command::Backups { site, json } => ctl::backups(&root, site, *json, &mut out, &mut err),
        Command::Rollback { site, to } => {
            sum::deploy::rollback::run(&root, site, to.as_deref(), None, &mut out, &mut err)
        }
        Command::Releases { site, json } => ctl::releases(&root, site, *json, &mut out, &mut err),
        Command::History { site, json, limit } => {
            ctl::history(&root, site, *json, *limit, &mut out, &mut err)
        }
    };
    ExitCode::from(code)
}
