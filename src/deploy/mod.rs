//! `sum-deploy` (SPEC §7): zero-downtime deploys with automatic rollback.
//!
//! `run` is the command; `state` is what it records (history, releases,
//! pruning); `app` runs the app's own code (pip, manage.py) as the site's
//! user; `control` is the service manager; `fetch` and `layout` build the
//! release and the site's directories; `shared` links `[deploy] shared`
//! paths; `public` is the HTTPS check; `bridge` serves the live release
//! while the unit restarts.

pub mod app;
pub mod bridge;
pub mod dirs;
pub mod explain;
pub mod fetch;
pub mod paths;
pub mod rollback;
pub mod run;
pub mod shared;

pub use run::{deploy, run, Ctx, Options, Outcome};
