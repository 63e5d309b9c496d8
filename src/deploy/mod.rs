//! The building blocks of `sum-deploy` (SPEC §7): the site's directory
//! layout, fetching and resolving a ref into an immutable release.
//! The deploy command itself (venv, checks, migrate, swap, smoke check,
//! rollback, history) is assembled from these in a later release.

pub mod fetch;
pub mod layout;
