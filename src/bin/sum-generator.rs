//! sum-generator: turns /etc/sum/sites/*.toml into systemd units at boot and
//! on `systemctl daemon-reload`. See sum-generator(8).

use std::process::ExitCode;

use sum::config::layout::Root;
use sum::render::generator::{self, Log};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut log = Log::detect();
    let normal = match generator::normal_dir_from_args(&args) {
        Ok(dir) => dir,
        Err(msg) => {
            log.error(&msg);
            return ExitCode::from(2);
        }
    };
    let outcome = generator::run(&Root::from_env(), &normal, &mut log);
    if outcome.failed_sites > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
