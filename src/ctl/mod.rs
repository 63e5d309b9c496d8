//! `sumctl`, the operator's front door: one file per command. Each command
//! writes its report to the given streams and returns its exit code (SPEC
//! §7), printing a failure once, so tests can run it in-process.

pub mod alert;
mod alert_send;
pub mod backups;
pub mod caddy;
pub mod check;
mod common;
pub mod history;
pub mod maintenance;
pub mod new;
mod new_db;
mod new_files;
mod new_redis;
pub mod probe;
pub mod releases;
pub mod remove;
pub mod render;
pub mod run;
pub mod status;
pub mod status_check;

pub use backups::backups;
pub use caddy::caddy_render;
pub use check::check;
pub use history::history;
pub use new::{new_site, NewSite, Services};
pub use releases::releases;
pub use render::render;
pub use status::status;
