//! sum-golden-path: run Django/Wagtail sites on one Debian/Ubuntu VPS,
//! with systemd as the only supervisor.
//!
//! The library holds everything; the binaries in `src/bin/` only parse
//! arguments, call one function here and map its result to an exit code.

pub mod accounts;
pub mod backup;
pub mod backup_cmd;
pub mod caddy;
pub mod calendar;
pub mod ctl;
pub mod deploy;
pub mod deploy_cmd;
pub mod envfile;
pub mod fsutil;
pub mod generator;
pub mod hashio;
pub mod journal;
pub mod layout;
pub mod lock;
pub mod media;
pub mod pgconn;
pub mod ping;
pub mod redisping;
pub mod restore;
pub mod retention;
pub mod site;
pub mod sites;
pub mod smoke;
pub mod status;
pub mod systemd;
pub mod text;
pub mod timefmt;
pub mod units;
