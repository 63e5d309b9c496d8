//! Configuration: what the operator wrote. The site file (`site`), every
//! site of a root with the last good copies (`sites`), OnCalendar specs
//! (`calendar`), the site's `.env` (`envfile`) and the paths of SPEC §4
//! (`layout`). The bottom layer: it imports nothing of the crate.

pub mod calendar;
pub mod envfile;
pub mod layout;
pub mod site;
pub mod sites;
