//! What a deploy and a rollback work with: the operator's options and the
//! context (root, site, the site's account, the socket systemd passed).

use std::os::fd::BorrowedFd;
use std::path::PathBuf;

use crate::config::layout::{Root, SiteLayout};
use crate::config::site::Site;

/// What the operator asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Deploy this ref instead of the site file's `[git] ref`.
    pub git_ref: Option<String>,
    /// Stop after migrating: no swap, no restart (for debugging).
    pub no_restart: bool,
}

/// Everything a deploy works with.
pub struct Ctx<'a> {
    pub root: &'a Root,
    pub site: &'a Site,
    pub opts: &'a Options,
    /// The site account (uid, gid); None under a test root.
    pub account: Option<(u32, u32)>,
    /// The site's listening socket, when systemd passed it
    /// (`sum-deploy@.service` has `Sockets=`): the bridge serves from it.
    pub listener: Option<BorrowedFd<'a>>,
}

impl Ctx<'_> {
    /// The site's canonical paths.
    pub(super) fn l(&self) -> SiteLayout {
        SiteLayout::new(&self.site.name)
    }

    /// A canonical path under this context's root.
    pub(super) fn p(&self, canonical: &str) -> PathBuf {
        self.root.path(canonical)
    }
}
