//! sum-golden-path: run Django/Wagtail sites on one Debian/Ubuntu VPS,
//! with systemd as the only supervisor.
//!
//! The library holds everything; the binaries in `src/bin/` only parse
//! arguments, call one function here and print its result.
//!
//! Components, from the bottom layer up (docs/architecture.md; a module
//! never imports from a layer above its own, `tests/it/layers.rs`):
//! - `config`: the site file, all sites, calendar specs, the `.env`, the layout;
//! - `system`: systemd, accounts, atomic files, time, text and the journal;
//! - `site_state`: the live release, its records, history and the site lock;
//! - `probe`: the smoke check, the public HTTPS check, Redis, PostgreSQL;
//! - `render`: units, the Caddy snippet and the generator;
//! - `backup`: dump, media, retention, restore, pings and `sum-backup`;
//! - `deploy`: `sum-deploy` and `sumctl rollback`;
//! - `ctl`: one file per `sumctl` command.

// Tests may use std::fs: a failing test shows its own context.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod backup;
pub mod config;
pub mod ctl;
pub mod deploy;
pub mod probe;
pub mod render;
pub mod site_state;
pub mod system;
