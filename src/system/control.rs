//! What a deploy, a rollback and a restore ask of the service manager:
//! restart or stop the app, say why it failed, reload Caddy. One trait:
//! systemd on a real system (`Systemd`), nothing under a test root
//! (`NoControl`), and the tests' own doubles.

use std::path::PathBuf;
use std::process::Command;

use crate::config::layout::{Root, SiteLayout};
use crate::config::site::Site;
use crate::system::systemd;

pub trait Control {
    /// Whether this control runs the app at all. When it does not (a test
    /// root without a service manager), the deploy stops after the swap
    /// and says that nothing was restarted or checked.
    fn manages_services(&self) -> bool;
    /// Restarts the app (gunicorn, and celery when enabled). Never SIGHUP:
    /// a restart starts the new release's code from scratch.
    fn restart(&mut self, site: &Site) -> Result<(), String>;
    /// Stops the app (a first deploy that failed after the swap: nothing
    /// to go back to).
    fn stop(&mut self, site: &Site) -> Result<(), String>;
    /// The socket gunicorn listens on.
    fn socket(&self, site: &Site) -> PathBuf;
    /// The last lines of the app's log, for a failure report.
    /// Nothing to show without a journal.
    fn journal_tail(&mut self, _site: &Site) -> String {
        String::new()
    }
    /// Reloads Caddy (its reload renders the site snippets first); nothing
    /// to do without one.
    fn reload_caddy(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// Whether the public HTTPS check applies (Caddy in front); not
    /// without one.
    fn public_url_reachable(&self) -> bool {
        false
    }
    /// Makes sure the site's socket unit really listens, repairing it if it
    /// can: Ok(None) when it listened, Ok(Some(what was done)), or an error
    /// that says what to run. A gunicorn started without the socket has
    /// nothing to serve. Without a service manager there is nothing to do.
    fn ensure_socket(&mut self, _site: &Site) -> Result<Option<String>, String> {
        Ok(None)
    }
    /// Stops the site's app units that are running (a restore), and says
    /// which, so that exactly those are started again.
    fn stop_running(&mut self, _site: &Site) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
    /// Starts `units` again after [`Control::stop_running`], with the socket
    /// made sure of first (it starts gunicorn on demand).
    fn start_again(&mut self, _site: &Site, _units: &[String]) -> Result<(), String> {
        Ok(())
    }
}

/// systemd on a real system, nothing under a test root.
pub fn for_root(root: &Root) -> Box<dyn Control> {
    if root.is_system() {
        Box::new(Systemd { root: root.clone() })
    } else {
        Box::new(NoControl { root: root.clone() })
    }
}

/// The units a deploy restarts.
pub fn app_units(site: &Site) -> Vec<String> {
    let n = &site.name;
    let mut units = vec![format!("sum-gunicorn@{n}.service")];
    if site.celery.worker {
        units.push(format!("sum-celery@{n}.service"));
    }
    if site.celery.beat {
        units.push(format!("sum-celerybeat@{n}.service"));
    }
    units.extend(site.processes.iter().map(|p| p.unit(n)));
    units
}

/// systemd, on a real system.
pub struct Systemd {
    pub root: Root,
}

impl Control for Systemd {
    fn manages_services(&self) -> bool {
        true
    }
    fn stop_running(&mut self, site: &Site) -> Result<Vec<String>, String> {
        // Every app unit the site may have, enabled in its file or not: a
        // celery worker turned off since it started still holds the database.
        let n = &site.name;
        let mut stopped = Vec::new();
        let every = [
            format!("sum-gunicorn@{n}.service"),
            format!("sum-celery@{n}.service"),
            format!("sum-celerybeat@{n}.service"),
        ];
        for unit in every
            .into_iter()
            .chain(site.processes.iter().map(|p| p.unit(n)))
        {
            if systemd::is_active(&unit) {
                systemd::systemctl(&["stop", &unit])?;
                stopped.push(unit);
            }
        }
        Ok(stopped)
    }
    fn start_again(&mut self, site: &Site, units: &[String]) -> Result<(), String> {
        if systemd::is_loaded(&format!("sum-gunicorn@{}.socket", site.name)) {
            // Started, or restarted when systemd no longer holds its socket.
            self.ensure_socket(site)?;
        }
        for unit in units {
            systemd::start_deliberately("start", std::slice::from_ref(unit))?;
        }
        Ok(())
    }
    fn ensure_socket(&mut self, site: &Site) -> Result<Option<String>, String> {
        systemd::ensure_socket(&site.name, &self.socket(site))
    }
    fn restart(&mut self, site: &Site) -> Result<(), String> {
        // The socket keeps listening while the service restarts, so
        // requests queue instead of failing; a gunicorn started without
        // it would have nothing to serve.
        self.ensure_socket(site)?;
        systemd::start_deliberately("restart", &app_units(site))
    }
    fn stop(&mut self, site: &Site) -> Result<(), String> {
        let units = app_units(site);
        let mut args = vec!["stop"];
        args.extend(units.iter().map(String::as_str));
        systemd::systemctl(&args)
    }
    fn socket(&self, site: &Site) -> PathBuf {
        self.root.path(SiteLayout::new(&site.name).socket)
    }
    fn journal_tail(&mut self, site: &Site) -> String {
        Command::new("journalctl")
            .args(["--no-pager", "-o", "short-iso", "-n", "25", "-u"])
            .arg(format!("sum-gunicorn@{}.service", site.name))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_string())
            .unwrap_or_default()
    }
    fn reload_caddy(&mut self) -> Result<(), String> {
        // Only when Caddy runs; a stopped Caddy renders when it starts.
        if systemd::is_active("caddy.service") {
            systemd::systemctl(&["reload", "caddy.service"])
        } else {
            Ok(())
        }
    }
    fn public_url_reachable(&self) -> bool {
        systemd::is_active("caddy.service")
    }
}

/// No service manager (a test root): nothing is restarted or checked.
pub struct NoControl {
    pub root: Root,
}

impl Control for NoControl {
    fn manages_services(&self) -> bool {
        false
    }
    fn restart(&mut self, _: &Site) -> Result<(), String> {
        Ok(())
    }
    fn stop(&mut self, _: &Site) -> Result<(), String> {
        Ok(())
    }
    fn socket(&self, site: &Site) -> PathBuf {
        self.root.path(SiteLayout::new(&site.name).socket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deploy_restarts_every_app_unit_the_site_file_names() {
        let text = "domain = \"acme.example.com\"\n[git]\nurl = \"https://example.com/a.git\"\n\
                    [celery]\nworker = true\n[processes]\nsendalerts = \"python manage.py sendalerts\"\n";
        let site = Site::parse(
            "acme-2",
            std::path::Path::new("/etc/sum/sites/acme-2.toml"),
            text,
        )
        .unwrap();
        assert_eq!(
            app_units(&site),
            [
                "sum-gunicorn@acme-2.service",
                "sum-celery@acme-2.service",
                "sum-app-sendalerts@acme-2.service"
            ]
        );
    }
}
