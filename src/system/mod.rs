//! The system under us: systemd (`systemd`, and `control`, the one
//! service-manager control with its test double), the site's account
//! (`accounts`), the ACL that closes its home to other users (`acl`), atomic files (`fsutil`), time (`timefmt`), the pipes to and from a child (`pipes`), quoting outside
//! text (`text`) and journal priorities of our output (`journal`).

pub mod accounts;
pub mod acl;
pub mod control;
pub mod failure;
pub mod fsutil;
pub mod journal;
pub mod metrics;
pub mod pgadmin;
pub mod pipes;
pub mod scram;
pub mod systemd;
pub mod text;
pub mod timefmt;
pub mod x509;
