//! Rendering: a `Site` to the files systemd and Caddy read. Unit files
//! (`units`), the Caddy snippet and its render step (`caddy`), and the
//! systemd generator (`generator`).

pub mod caddy;
pub mod generator;
pub mod units;
