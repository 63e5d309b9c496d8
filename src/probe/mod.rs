//! Probes: asking a running thing whether it works. The smoke check over
//! the site's socket (`smoke`, one request; `wait`, asking until an answer
//! decides), the public HTTPS check (`public`), Redis `PING` (`redis`) and
//! `DATABASE_URL` to a password-free PostgreSQL connection (`pgconn`).

pub mod certs;
pub mod pgconn;
pub mod public;
pub mod redis;
pub mod smoke;
pub mod wait;
