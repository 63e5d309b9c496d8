//! `sum-deploy` (SPEC §7): zero-downtime deploys with automatic rollback.
//!
//! `run` is the command and `steps` with `after_swap` its steps, one
//! method of `Deploy` each; `rollback` is `sumctl rollback`. What both
//! share: `ctx` (options and context), `command` (the site's lock, the
//! control), `steplog` (the step log and a step's failure), `swap` (the
//! live links, the restart, the way back) and `record` (the history
//! record). `preflight` checks before anything is touched, `prune` cleans
//! up after; `app` runs the app's own code (pip, manage.py) as the site's
//! user; `fetch` and `dirs` build the release and the site's directories;
//! `shared` links `[deploy] shared` paths, `paths` the effective static and
//! media roots; `explain` says what Django raises for a failed smoke check;
//! `bridge` serves the live release while the unit restarts; `relay` passes
//! the app's own output into the log, marked as the app's.

mod after_swap;
pub mod app;
pub mod bridge;
mod command;
mod ctx;
pub mod database;
pub mod dirs;
pub mod explain;
pub mod fetch;
pub mod paths;
mod preflight;
mod prune;
mod record;
pub mod relay;
mod release_cmds;
pub mod rollback;
pub mod run;
pub mod shared;
mod steplog;
mod steps;
mod swap;
#[cfg(test)]
mod testkit;

pub use run::{deploy, run, Ctx, Options, Outcome};
