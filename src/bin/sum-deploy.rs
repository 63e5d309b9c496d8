//! sum-deploy: deploy a site with automatic rollback. See sum-deploy(8).

use std::process::ExitCode;

use clap::Parser;
use sum::config::layout::Root;
use sum::deploy::{self, Options};

#[derive(Parser)]
#[command(
    name = "sum-deploy",
    version,
    about = "Deploy a site: build a release, check it, migrate, switch, smoke-check; roll back on failure"
)]
struct Cli {
    /// The site (the name of /etc/sum/sites/<site>.toml)
    site: String,
    /// Deploy this branch, tag or commit instead of the site file's [git] ref
    #[arg(long = "ref", value_name = "REF")]
    git_ref: Option<String>,
    /// Stop after migrating: build and check the release, but do not switch to it
    #[arg(long)]
    no_restart: bool,
}

fn main() -> ExitCode {
    sum::system::journal::log_panics_as_errors();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let opts = Options {
        git_ref: cli.git_ref,
        no_restart: cli.no_restart,
    };
    ExitCode::from(deploy::run(
        &Root::from_env(),
        &cli.site,
        &opts,
        None,
        &mut sum::system::journal::stdout(),
        &mut sum::system::journal::stderr(),
    ))
}
