//! `sum-backup` and `sum-restore` (SPEC §8, docs/backups.md): the verified
//! dump (`dump`), hashing while writing (`hashio`), the media archive
//! (`media`), retention (`retention`), pings (`ping`), the `sum-backup`
//! command (`run`) and the restore (`restore`).

mod command;
pub mod contents;
pub mod dump;
pub mod hashio;
pub mod media;
pub mod ping;
pub mod restore;
pub mod retention;
pub mod run;

pub use run::{run, Args};
