//! The integration tests, one binary: each module was a test file of its
//! own, and `common` (fixtures: real PostgreSQL, Redis, gunicorn, site roots)
//! is compiled once for all of them. Run one module with
//! `cargo test --test it <module>::`, e.g. `cargo test --test it deploy_faults::`.

// Tests may use std::fs: a failing test shows its own context.
#![allow(clippy::disallowed_methods)]

mod common;

mod alert;
mod app_database;
mod backup;
mod backup_shrink;
mod bridge;
mod cache_headers;
mod calendar_systemd;
mod completions;
mod deploy;
mod deploy_faults;
mod deploy_fetch;
mod envfile_corpus;
mod generator_cli;
mod golden;
mod gunicorn_conf;
mod home_acl;
mod layers;
mod media_restore;
mod offsite;
mod package_docs;
mod pgconn;
mod probe;
mod provision;
mod real_tools;
mod redis_preflight;
mod release_checks;
mod release_cmds;
mod restore;
mod sizes;
mod smoke;
mod sumctl;
mod sumctl_deploy;
mod validation;
