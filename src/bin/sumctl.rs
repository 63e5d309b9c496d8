//! sumctl: the operator's front door to sum-golden-path. See sumctl(8).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};
use clap_complete::CompleteEnv;
use sum::config::layout::Root;
use sum::ctl::maintenance::{self, Switch};
use sum::ctl::run::RunArgs;
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
    Render {
        #[arg(add = sites())]
        #[arg(add = sites())]
        site: String,
    },
    /// Create a site: its file, its own database and Redis, and a .env naming them
    New {
        site: String,
        /// The site's host name (needed for a new site file)
        #[arg(long)]
        domain: Option<String>,
        /// The git repository to deploy from (needed for a new site file)
        #[arg(long)]
        git: Option<String>,
        /// Another host name redirected to the domain (repeatable)
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// Use this existing or managed database instead of creating one
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
    },
    /// Take a site off this host: units, site file, Caddy; its data stays unless --purge
    Remove {
        #[arg(add = sites())]
        site: String,
        /// Also delete its database and role, Redis, home (media, backups) and account
        #[arg(long)]
        purge: bool,
        /// The confirmation --purge needs
        #[arg(long = "i-know-this-deletes-data")]
        confirmed: bool,
    },
    /// Write the Caddy snippets of every site (run by caddy.service before start and reload)
    CaddyRender,
    /// Switch a site's maintenance page on or off (no reload), or show it
    Maintenance {
        #[arg(add = sites())]
        site: String,
        #[arg(value_enum)]
        switch: SwitchArg,
    },
    /// Run a command as the site's app runs: its user, .env, live release, venv and sandbox
    Run {
        /// Also set NAME in the command's environment: to VALUE, or with
        /// NAME=... omitted, to its value here (never on a command line)
        #[arg(short = 'e', long = "env", value_name = "NAME[=VALUE]")]
        env: Vec<String>,
        #[arg(add = sites())]
        site: String,
        /// The command, after `--`
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Run `python manage.py ARGS…` as the site's app runs (see `run`)
    Manage {
        /// As for `run`: e.g. --env DJANGO_SUPERUSER_PASSWORD
        #[arg(short = 'e', long = "env", value_name = "NAME[=VALUE]")]
        env: Vec<String>,
        #[arg(add = sites())]
        site: String,
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
    /// Live release, last verified backup, next backup and unit states
    Status {
        #[arg(add = sites())]
        site: Option<String>,
        #[arg(long)]
        json: bool,
        /// One line per problem; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
        #[arg(long)]
        check: bool,
        /// With --check: how long past its schedule's period a backup may be late
        #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = grace)]
        backup_grace: u64,
    },
    /// Send the alert about a site's unit (run by sum-alert@.service), or a test alert
    Alert {
        /// The unit that failed or recovered, e.g. sum-backup@acme.service;
        /// with --test, a site
        #[arg(value_name = "UNIT|SITE")]
        what: String,
        /// Send a test alert about SITE to every configured destination
        #[arg(long)]
        test: bool,
        /// The run's result instead of asking systemd (e.g. exit-code, success)
        #[arg(long, hide = true)]
        result: Option<String>,
        /// Run by ExecStopPost= of an app service: queue an alert unless
        /// $SERVICE_RESULT is success
        #[arg(long, conflicts_with = "test")]
        stopped: bool,
    },
    /// Probe a site's health path through its socket and Caddy (run by sum-probe@.timer)
    Probe {
        #[arg(add = sites())]
        site: String,
    },
    /// List a site's backups, newest first
    Backups {
        #[arg(add = sites())]
        site: String,
        #[arg(long)]
        json: bool,
    },
    /// Go back to an earlier release still on disk: swap, restart, smoke check
    Rollback {
        #[arg(add = sites())]
        site: String,
        /// The release to go to: its name or a unique part of it (e.g. a short sha);
        /// default: the newest good release older than the live one
        #[arg(long, value_name = "RELEASE")]
        to: Option<String>,
    },
    /// List a site's releases on disk, newest first, with the live and last good ones
    Releases {
        #[arg(add = sites())]
        site: String,
        #[arg(long)]
        json: bool,
    },
    /// Show a site's deploys and rollbacks, newest first
    History {
        #[arg(add = sites())]
        site: String,
        #[arg(long)]
        json: bool,
        /// How many to show (0: all)
        #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SwitchArg {
    On,
    Off,
    Status,
}

/// Tab completes the names of the sites in /etc/sum/sites.
fn sites() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &std::ffi::OsStr| {
        let current = current.to_string_lossy();
        sum::config::sites::site_names(&Root::from_env())
            .into_iter()
            .filter(|name| name.starts_with(current.as_ref()))
            .map(CompletionCandidate::new)
            .collect::<Vec<_>>()
    })
}

/// A duration such as `2h`, `90min` or `1d`, in seconds.
fn grace(v: &str) -> Result<u64, String> {
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match &v[digits.len()..] {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "unknown unit `{other}`: use s, min, h or d, e.g. 2h"
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("`{v}` is not a duration such as 2h, 90min or 1d"))
}

fn main() -> ExitCode {
    // `COMPLETE=bash sumctl` prints the shell's registration script; the
    // shell then asks `sumctl` itself for each completion (site names too).
    CompleteEnv::with_factory(Cli::command)
        .completer("sumctl")
        .complete();
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
        c @ (Command::New { .. }
        | Command::Run { .. }
        | Command::Manage { .. }
        | Command::Maintenance { .. }
        | Command::Remove { .. }) => site_life(&root, c, &mut out, &mut err),
        Command::CaddyRender => ctl::caddy_render(&root, &mut out, &mut err),
        Command::Status {
            site,
            json,
            check,
            backup_grace,
        } => {
            let opts = ctl::status::Options {
                json: *json,
                check: *check,
                backup_grace: *backup_grace,
            };
            ctl::status(&root, site.as_deref(), opts, &mut out, &mut err)
        }
        Command::Alert {
            what,
            test,
            result,
            stopped,
        } => {
            let run = ctl::alert::Run {
                result: result.clone(),
                test: *test,
                stopped: *stopped,
            };
            ctl::alert::alert(&root, what, &run, &mut out, &mut err)
        }
        Command::Probe { site } => ctl::probe::probe(&root, site, &mut out, &mut err),
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

/// The commands of a site's life: new, run, manage, maintenance, remove.
fn site_life(root: &Root, command: &Command, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match command {
        Command::New {
            site,
            domain,
            git,
            aliases,
            database_url,
        } => ctl::new_site(
            root,
            &NewSite {
                name: site,
                domain: domain.as_deref(),
                git: git.as_deref(),
                aliases,
                database_url: database_url.as_deref(),
            },
            &ctl::Services::for_root(root),
            out,
            err,
        ),
        Command::Run { env, site, command } => {
            let args = RunArgs { site, command, env };
            sum::ctl::run::run(root, &args, err)
        }
        Command::Manage { env, site, args } => {
            let args = RunArgs {
                site,
                command: args,
                env,
            };
            sum::ctl::run::manage(root, &args, err)
        }
        Command::Maintenance { site, switch } => {
            let switch = match switch {
                SwitchArg::On => Switch::On,
                SwitchArg::Off => Switch::Off,
                SwitchArg::Status => Switch::Status,
            };
            let who = sum::system::accounts::operator();
            maintenance::maintenance(root, site, switch, &who, out, err)
        }
        Command::Remove {
            site,
            purge,
            confirmed,
        } => {
            let args = sum::ctl::remove::RemoveSite {
                name: site,
                purge: *purge,
                confirmed: *confirmed,
            };
            let admin = sum::system::pgadmin::Admin::for_root(root);
            sum::ctl::remove::remove_site(root, &args, &admin, out, err)
        }
        _ => unreachable!("not a command of a site's life"),
    }
}
