//! `sum-backup` and `sum-restore` (SPEC §8, docs/backups.md): the verified
//! dump (`dump`) checked as it is written (`instep`), hashing (`hashio`),
//! what a dump holds
//! (`contents`) and whether it shrank (`shrink`), manifests and the list of
//! backups (`catalog`), the media archive (`media`), retention
//! (`retention`), pings (`ping`), which database the app uses (`appdb`),
//! off-host copies (`offsite`, `offsite_fetch`, with `rclone`),
//! the `sum-backup` command (`run`), the restore (`restore`) of the
//! database (`load`, verified as it streams) and of the media (`restore_media`) with the scratch database
//! of a rehearsal (`scratch`), and the `sum-restore` command
//! (`restore_command`).

pub mod appdb;
pub mod catalog;
mod command;
pub mod contents;
pub mod dump;
pub mod hashio;
pub mod instep;
pub mod load;
pub mod media;
pub mod metrics;
pub mod offsite;
pub mod offsite_fetch;
pub mod ping;
pub mod rclone;
pub mod restore;
pub mod restore_command;
pub mod restore_media;
pub mod retention;
pub mod run;
pub mod scratch;
pub mod shrink;

pub use run::{run, Args};
