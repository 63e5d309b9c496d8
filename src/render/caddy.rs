//! Caddy integration: one snippet per site, rendered before every Caddy start
//! and reload by the package's `caddy.service` drop-in (SPEC §6).
//!
//! The generator may not write Caddy files (systemd.generator(7)) and no
//! maintainer script may touch `/etc/caddy/Caddyfile` (a conffile), so Caddy
//! is pointed at our root file, which imports the admin's Caddyfile untouched
//! and then `/run/sum/caddy/*.caddy`. `snippet` is pure; `render_all` is the
//! I/O around it.

use std::path::Path;

use crate::config::layout::{Root, SiteLayout, CADDY_RUN_DIR};
use crate::config::site::Site;
use crate::config::sites;
use crate::site_state::PreviousStatic;
use crate::system::fsutil::write_atomic;

/// The header line listing a snippet's host names, so the render step can
/// tell which hosts a kept snippet still serves.
const HOSTS_PREFIX: &str = "# hosts: ";

/// Static file names that carry a hash of their content, as Caddy's
/// `path_regexp` (Go's RE2) reads the path below `/static/`: a dot, exactly
/// 12 lowercase hex digits, then the last extension or the end of the name.
/// Django's ManifestStaticFilesStorage writes `<root>.<hash><ext>` (its
/// `hashed_name`: `os.path.splitext`, and `file_hash`, an MD5's first 12 hex
/// digits), so `css/site.3f2a9c1b7d4e.css`, `LICENSE.477dfa54ede2`;
/// django-compressor writes its output as `CACHE/css/output.<hash>.css`
/// (`get_filepath`, a SHA-256's first 12). Checked against the names both
/// really write in `tests/it/cache_headers.rs`.
pub const HASHED_STATIC_NAME: &str = r"[^/]\.[0-9a-f]{12}(\.[^/.]+)?$";

/// `Cache-Control` of a hashed static file: its content can never change.
pub const CACHE_HASHED: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of any other static file: the next deploy may change it,
/// so a minute (WhiteNoise's default), then a revalidation (ETag).
pub const CACHE_STATIC: &str = "public, max-age=60, must-revalidate";
/// `Cache-Control` of media: an upload can be replaced under its name.
pub const CACHE_MEDIA: &str = "public, max-age=3600";

/// What the snippet needs to know beyond the site file: facts on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// Whether a release is live (`/srv/sum/<site>/app` exists).
    pub deployed: bool,
    /// Directories Caddy serves `/static/` and `/media/` from.
    pub static_dir: String,
    pub media_dir: String,
    /// The static files of the release that was live before (after a
    /// rollback: the release rolled back from), served where the live
    /// release has no such file: pages rendered by that release may still
    /// ask for its hashed CSS and JS (`main.309e4bcbd0d4.css`). Until the
    /// next deploy or rollback, while the release is on disk.
    pub previous_static: Option<PreviousStatic>,
}

impl Served {
    /// The defaults of SPEC §4 for a site, before any deploy recorded others.
    pub fn defaults(site: &Site, deployed: bool) -> Served {
        let l = SiteLayout::new(&site.name);
        Served {
            deployed,
            static_dir: l.static_dir,
            media_dir: l.media_dir,
            previous_static: None,
        }
    }

    /// Reads what is on disk under `root` for `site`: whether a release is
    /// live, and the effective STATIC_ROOT and MEDIA_ROOT that the live
    /// release's deploy recorded (`state/releases/<release>.json`), so a
    /// deploy or a rollback switches what Caddy serves with the code. A
    /// recorded path is used only where Caddy may serve from
    /// ([`crate::site_state::servable`]). The previous release's static
    /// files: [`crate::site_state::previous_static`].
    pub fn from_disk(root: &Root, site: &Site) -> Served {
        let l = SiteLayout::new(&site.name);
        let mut served = Served::defaults(site, root.path(&l.app).exists());
        let live = crate::site_state::live_paths(root, &site.name);
        if let Some(d) = live.static_dir {
            served.static_dir = d;
        }
        if let Some(d) = live.media_dir {
            served.media_dir = d;
        }
        if served.deployed {
            served.previous_static = crate::site_state::previous_static(root, &site.name);
        }
        served
    }
}

/// Quotes a value as one Caddyfile token. Braces are refused rather than
/// escaped because Caddy expands `{placeholders}` even inside quotes.
pub fn token(s: &str) -> Result<String, String> {
    if let Some(c) = s.chars().find(|c| c.is_control() || matches!(c, '{' | '}')) {
        return Err(format!(
            "{s:?} contains {c:?}, which a Caddyfile cannot carry safely"
        ));
    }
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | ':' | '*'))
    {
        return Ok(s.to_string());
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// Renders the Caddy snippet of one site.
pub fn snippet(site: &Site, served: &Served) -> Result<String, String> {
    let l = SiteLayout::new(&site.name);
    let domain = token(&site.domain)?;
    let socket = token(&format!("unix/{}", l.socket))?;
    let flag = token(&l.maintenance_flag)?;
    let static_files = static_files(served)?;
    let media_dir = token(&served.media_dir)?;
    let maintenance_text = token(&format!(
        "{} is down for maintenance. Please try again in a few minutes.",
        site.domain
    ))?;
    let unavailable_text = token(&format!(
        "{} is temporarily unavailable. Please try again shortly.",
        site.domain
    ))?;
    let app = app_route(site, &socket, served.deployed)?;
    let mut out = format!(
        "# Generated by `sumctl caddy-render` from {src}. Do not edit:\n\
         # change the site file, then `systemctl reload caddy`.\n\
         {HOSTS_PREFIX}{hosts}\n\
         {domain} {{\n\
         \tencode zstd gzip\n\
         \theader {{\n\
         \t\tStrict-Transport-Security \"max-age=31536000\"\n\
         \t\tX-Content-Type-Options \"nosniff\"\n\
         \t\tReferrer-Policy \"strict-origin-when-cross-origin\"\n\
         \t\t-Server\n\
         \t}}\n\
         \troute {{\n\
         \t\t# `sumctl maintenance {name} on` creates the flag; no reload needed.\n\
         \t\t@maintenance file {{\n\
         \t\t\troot /\n\
         \t\t\ttry_files {flag}\n\
         \t\t}}\n\
         \t\thandle @maintenance {{\n\
         \t\t\theader Retry-After \"120\"\n\
         \t\t\trespond {maintenance_text} 503\n\
         \t\t}}\n\
         {static_files}\
         \t\thandle_path /media/* {{\n\
         \t\t\t# An upload can be replaced under its name: an hour, then revalidated.\n\
         \t\t\theader Cache-Control \"{CACHE_MEDIA}\"\n\
         \t\t\troot * {media_dir}\n\
         \t\t\tfile_server\n\
         \t\t}}\n\
         {app}\
         \t}}\n\
         \thandle_errors {{\n\
         \t\t# No error (a file not found, say) keeps a file's cache lifetime.\n\
         \t\theader -Cache-Control\n\
         \t\t@unavailable expression `{{err.status_code}} in [502, 503, 504]`\n\
         \t\thandle @unavailable {{\n\
         \t\t\theader Retry-After \"30\"\n\
         \t\t\trespond {unavailable_text} {{err.status_code}}\n\
         \t\t}}\n\
         \t}}\n\
         }}\n",
        src = site.source.display(),
        name = site.name,
        hosts = site.hosts().collect::<Vec<_>>().join(" "),
    );
    out.push_str(&alias_redirect(site, &domain)?);
    Ok(out)
}

/// How the app is reached: gunicorn's socket once a release is live, a 503
/// that says so before.
fn app_route(site: &Site, socket: &str, deployed: bool) -> Result<String, String> {
    if deployed {
        return Ok(format!(
            "\t\thandle {{\n\
             \t\t\t# Restarts queue here instead of failing: gunicorn's socket is held by systemd.\n\
             \t\t\treverse_proxy {socket} {{\n\
             \t\t\t\tlb_try_duration 30s\n\
             \t\t\t\tlb_try_interval 250ms\n\
             \t\t\t}}\n\
             \t\t}}\n"
        ));
    }
    let text = token(&format!("{} has not been deployed yet.", site.domain))?;
    Ok(format!(
        "\t\t# No release is live yet: the first deploy re-renders this snippet.\n\
         \t\thandle {{\n\
         \t\t\theader Retry-After \"60\"\n\
         \t\t\trespond {text} 503\n\
         \t\t}}\n"
    ))
}

/// The aliases' permanent redirect to the domain (nothing without aliases).
fn alias_redirect(site: &Site, domain: &str) -> Result<String, String> {
    if site.aliases.is_empty() {
        return Ok(String::new());
    }
    let aliases: Result<Vec<String>, String> = site.aliases.iter().map(|a| token(a)).collect();
    // `domain` is a validated host name, so it is a bare token and the
    // `{uri}` placeholder can follow it directly.
    let target = format!("https://{domain}{{uri}}");
    Ok(format!(
        "{aliases} {{\n\tredir {target} permanent\n}}\n",
        aliases = aliases?.join(", "),
    ))
}

/// The `/static/*` route: the live release's directory, then, for files it
/// lacks, the previous release's (`file_server` with `pass_thru` goes on to
/// the next handler on a 404; Caddy 2.6.2 has it).
fn static_files(served: &Served) -> Result<String, String> {
    let live = token(&served.static_dir)?;
    let cache = static_cache_control();
    let Some(previous) = &served.previous_static else {
        return Ok(format!(
            "\t\thandle_path /static/* {{\n\
             {cache}\
             \t\t\troot * {live}\n\
             \t\t\tfile_server\n\
             \t\t}}\n"
        ));
    };
    Ok(format!(
        "\t\thandle_path /static/* {{\n\
         {cache}\
         \t\t\t# The live release's files, then those of {release}, live before it:\n\
         \t\t\t# pages it rendered may still ask for them (until the next deploy or rollback).\n\
         \t\t\tfile_server {{\n\
         \t\t\t\troot {live}\n\
         \t\t\t\tpass_thru\n\
         \t\t\t}}\n\
         \t\t\tfile_server {{\n\
         \t\t\t\troot {dir}\n\
         \t\t\t}}\n\
         \t\t}}\n",
        release = token(&previous.release)?,
        dir = token(&previous.static_dir)?,
    ))
}

/// The `Cache-Control` of `/static/*`: a year for a name with a content
/// hash, a minute for any other. Two matchers that exclude each other, so
/// the order Caddy sorts the two `header`s in does not matter.
fn static_cache_control() -> String {
    format!(
        "\t\t\t# A name with a content hash (css/site.3f2a9c1b7d4e.css, CACHE/css/output.3f2a9c1b7d4e.css)\n\
         \t\t\t# never changes: a year. Any other may change with the next deploy: a minute.\n\
         \t\t\t@hashed path_regexp {HASHED_STATIC_NAME}\n\
         \t\t\t@unhashed not path_regexp {HASHED_STATIC_NAME}\n\
         \t\t\theader @hashed Cache-Control \"{CACHE_HASHED}\"\n\
         \t\t\theader @unhashed Cache-Control \"{CACHE_STATIC}\"\n"
    )
}

/// What a render pass did.
#[derive(Debug, Default)]
pub struct RenderOutcome {
    pub written: Vec<String>,
    pub removed: Vec<String>,
    pub kept: Vec<String>,
    pub problems: Vec<String>,
}

/// Writes one snippet per valid site into `/run/sum/caddy/` and removes the
/// snippets of sites whose file is gone. A site whose file became invalid
/// keeps its last good snippet: a typo must not take a serving site offline.
/// A valid site is not rendered while a kept snippet still serves one of its
/// hosts: Caddy would refuse the whole configuration.
pub fn render_all(root: &Root) -> std::io::Result<RenderOutcome> {
    let mut outcome = RenderOutcome::default();
    let dir = root.path(CADDY_RUN_DIR);
    fs_err::create_dir_all(&dir)?;
    let loaded = sites::load_all(root)?;
    for e in &loaded.errors {
        outcome.problems.push(e.to_string());
    }
    let sites_dir = root.sites_dir();
    let mut kept_hosts: Vec<(String, String)> = Vec::new();
    for entry in fs_err::read_dir(&dir)? {
        let path = entry?.path();
        let Some(name) = snippet_site_name(&path) else {
            continue;
        };
        if loaded.sites.iter().any(|s| s.name == name) {
            continue;
        }
        if sites_dir.join(format!("{name}.toml")).exists() {
            let text = fs_err::read_to_string(&path)?;
            let hosts = text
                .lines()
                .find_map(|l| l.strip_prefix(HOSTS_PREFIX))
                .unwrap_or("");
            for h in hosts.split_whitespace() {
                kept_hosts.push((h.to_string(), name.clone()));
            }
            outcome.kept.push(name);
        } else {
            fs_err::remove_file(&path)?;
            outcome.removed.push(name);
        }
    }
    for site in &loaded.sites {
        if let Some((host, owner)) = kept_hosts
            .iter()
            .find(|(h, _)| site.hosts().any(|x| x == h))
        {
            outcome.problems.push(format!(
                "site {}: not rendered: host `{host}` is still served by the last good snippet of \
                 site `{owner}`, whose site file is invalid; fix or remove that file",
                site.name
            ));
            continue;
        }
        let served = Served::from_disk(root, site);
        match snippet(site, &served) {
            Ok(text) => {
                let path = dir.join(format!("{}.caddy", site.name));
                if fs_err::read(&path).ok().as_deref() != Some(text.as_bytes()) {
                    write_atomic(&path, text.as_bytes(), 0o644)?;
                }
                outcome.written.push(site.name.clone());
            }
            Err(e) => outcome.problems.push(format!("site {}: {e}", site.name)),
        }
    }
    outcome.kept.sort();
    outcome.removed.sort();
    Ok(outcome)
}

fn snippet_site_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".caddy")?;
    crate::config::site::check_site_name(stem).ok()?;
    Some(stem.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_quoted_or_refused() {
        assert_eq!(
            token("/srv/sum/acme/static").unwrap(),
            "/srv/sum/acme/static"
        );
        assert_eq!(token("a b").unwrap(), "\"a b\"");
        assert_eq!(token("say \"hi\"").unwrap(), "\"say \\\"hi\\\"\"");
        assert!(token("/srv/{env.HOME}").is_err());
        assert!(token("a\nb").is_err());
    }

    /// A temporary root (kept alive by the TempDir) and the site `acme`.
    fn acme_root() -> (tempfile::TempDir, Root, Site) {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        let site = Site::parse(
            "acme",
            Path::new("/etc/sum/sites/acme.toml"),
            "domain = \"acme.example.com\"\n[git]\nurl = \"https://git.example.com/acme.git\"\n",
        )
        .unwrap();
        (d, root, site)
    }

    #[test]
    fn the_live_release_decides_where_static_and_media_are_served_from() {
        use crate::site_state::{save_release, ReleaseInfo, ReleaseStatus};
        let (_dir, root, site) = acme_root();
        let home = root.path("/srv/sum/acme");
        let state = root.path("/srv/sum/acme/state");
        fs_err::create_dir_all(home.join("releases/r1")).unwrap();
        fs_err::create_dir_all(home.join("releases/r2")).unwrap();
        fs_err::create_dir_all(&state).unwrap();
        let record = |name: &str, st: Option<String>, media: Option<String>| {
            save_release(
                &state,
                &ReleaseInfo {
                    release: name.into(),
                    git_ref: "main".into(),
                    sha: "0".repeat(40),
                    venv: "v".into(),
                    created_utc: "2026-12-03T00:00:00Z".into(),
                    status: ReleaseStatus::Good,
                    migrations: vec![],
                    static_root: st,
                    media_root: media,
                    database: None,
                },
            )
            .unwrap()
        };
        // Not deployed: the defaults.
        let s = Served::from_disk(&root, &site);
        assert_eq!(s, Served::defaults(&site, false));

        // r1 collected into its own directory (recorded as the real path
        // under this test root); its MEDIA_ROOT points outside the site.
        let collected = home.join("releases/r1/collect_static");
        record(
            "r1",
            Some(collected.display().to_string()),
            Some("/etc".into()),
        );
        // r2 recorded nothing.
        std::os::unix::fs::symlink("releases/r1", home.join("app")).unwrap();
        let s = Served::from_disk(&root, &site);
        assert!(s.deployed);
        assert_eq!(s.static_dir, "/srv/sum/acme/releases/r1/collect_static");
        assert_eq!(
            s.media_dir, "/srv/sum/acme/media",
            "outside the site: refused"
        );
        let text = snippet(&site, &s).unwrap();
        assert!(
            text.contains("root * /srv/sum/acme/releases/r1/collect_static"),
            "{text}"
        );

        // A rollback to r2 switches back to the defaults.
        fs_err::remove_file(home.join("app")).unwrap();
        std::os::unix::fs::symlink("releases/r2", home.join("app")).unwrap();
        assert_eq!(
            Served::from_disk(&root, &site),
            Served::defaults(&site, true)
        );

        // '..' and the home itself are refused.
        record(
            "r2",
            Some("/srv/sum/acme/../other/static".into()),
            Some("/srv/sum/acme".into()),
        );
        assert_eq!(
            Served::from_disk(&root, &site),
            Served::defaults(&site, true)
        );
    }

    #[test]
    fn the_previous_releases_static_files_stay_served_after_a_deploy_or_a_rollback() {
        use crate::site_state::{append, save_release, Record, ReleaseInfo, ReleaseStatus};
        let (_dir, root, site) = acme_root();
        let home = root.path("/srv/sum/acme");
        let state = root.path("/srv/sum/acme/state");
        fs_err::create_dir_all(&state).unwrap();
        let release = |name: &str, static_root: Option<&str>| {
            fs_err::create_dir_all(home.join("releases").join(name)).unwrap();
            save_release(
                &state,
                &ReleaseInfo {
                    release: name.into(),
                    git_ref: "main".into(),
                    sha: "0".repeat(40),
                    venv: "v".into(),
                    created_utc: "2026-12-03T00:00:00Z".into(),
                    status: ReleaseStatus::Good,
                    migrations: vec![],
                    static_root: static_root.map(|s| {
                        home.join("releases")
                            .join(name)
                            .join(s)
                            .display()
                            .to_string()
                    }),
                    media_root: None,
                    database: None,
                },
            )
            .unwrap();
        };
        let record = |action: &str, name: &str, previous: Option<&str>| {
            append(
                &state,
                &Record {
                    action: action.into(),
                    release: Some(name.into()),
                    previous: previous.map(str::to_string),
                    outcome: "ok".into(),
                    ..Record::default()
                },
            )
            .unwrap()
        };
        let go_live = |name: &str| {
            let _ = fs_err::remove_file(home.join("app"));
            std::os::unix::fs::symlink(format!("releases/{name}"), home.join("app")).unwrap();
        };
        let previous = |s: &Served| {
            s.previous_static
                .as_ref()
                .map(|p| (p.release.clone(), p.static_dir.clone()))
        };
        release("r1", Some("collect_static"));
        go_live("r1");
        record("deploy", "r1", None);
        assert_eq!(
            previous(&Served::from_disk(&root, &site)),
            None,
            "first deploy"
        );

        // A deploy of r2 renders after its swap, before its record.
        release("r2", Some("collect_static"));
        go_live("r2");
        let s = Served::from_disk(&root, &site);
        let r1_static = "/srv/sum/acme/releases/r1/collect_static".to_string();
        assert_eq!(previous(&s), Some(("r1".into(), r1_static.clone())));
        let text = snippet(&site, &s).unwrap();
        assert!(
            text.contains(
                "\t\t\tfile_server {\n\t\t\t\troot /srv/sum/acme/releases/r2/collect_static\n\
                 \t\t\t\tpass_thru\n\t\t\t}\n\t\t\tfile_server {\n\t\t\t\troot \
                 /srv/sum/acme/releases/r1/collect_static\n"
            ),
            "{text}"
        );
        record("deploy", "r2", Some("r1"));
        assert_eq!(Served::from_disk(&root, &site), s, "the same once recorded");

        // A rollback to r1: r2's files back it up, before and after its record.
        go_live("r1");
        let r2_static = "/srv/sum/acme/releases/r2/collect_static".to_string();
        let s = Served::from_disk(&root, &site);
        assert_eq!(previous(&s), Some(("r2".into(), r2_static)));
        record("rollback", "r1", Some("r2"));
        assert_eq!(Served::from_disk(&root, &site), s);

        // r3 collects into the site's static/; r1 stays the fallback.
        release("r3", None);
        go_live("r3");
        record("deploy", "r3", Some("r1"));
        let s = Served::from_disk(&root, &site);
        assert_eq!(s.static_dir, "/srv/sum/acme/static");
        assert_eq!(previous(&s), Some(("r1".into(), r1_static)));

        // Pruned: no fallback, and the snippet is the plain one again.
        fs_err::remove_dir_all(home.join("releases/r1")).unwrap();
        let s = Served::from_disk(&root, &site);
        assert_eq!(previous(&s), None);
        assert!(!snippet(&site, &s).unwrap().contains("pass_thru"));

        // Both in the site's static/: nothing to add.
        release("r4", None);
        go_live("r4");
        record("deploy", "r4", Some("r3"));
        assert_eq!(previous(&Served::from_disk(&root, &site)), None);
    }
}
