//! `sumctl`, the operator's front door: check, render, new and the Caddy
//! render step. Each command returns an exit code (SPEC §7's table) and
//! writes its report to the given streams, so tests can run it in-process.

pub mod maintenance;
pub mod releases;
pub mod status;

use std::io::Write;
use std::path::PathBuf;

use crate::config::layout::{Root, SiteLayout};
use crate::config::site::{check_host, check_site_name, Site};
use crate::config::sites;
use crate::render::caddy;
use crate::render::units;
use crate::system::fsutil::write_atomic;

/// Exit codes shared by every binary (SPEC §7).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
}

/// `sumctl check [FILES…]`: validates without writing anything.
pub fn check(root: &Root, files: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let files = if files.is_empty() {
        match sites::site_files(&root.sites_dir()) {
            Ok(f) => f,
            Err(e) => {
                let _ = writeln!(err, "failed to read {}: {e}", root.sites_dir().display());
                return exit::FAILED;
            }
        }
    } else {
        files.to_vec()
    };
    if files.is_empty() {
        let _ = writeln!(out, "no site files in {}", root.sites_dir().display());
        return exit::OK;
    }
    let loaded = sites::load_files_keeping(&files, Some(&root.path(sites::LAST_GOOD_DIR)));
    for site in loaded
        .sites
        .iter()
        .filter(|s| loaded.fallback(&s.name).is_none())
    {
        let _ = writeln!(
            out,
            "ok: {} (site {}, {})",
            files
                .iter()
                .find(|f| f.file_stem().and_then(|s| s.to_str()) == Some(site.name.as_str()))
                .map_or_else(|| site.source.clone(), Clone::clone)
                .display(),
            site.name,
            site.domain
        );
    }
    for e in &loaded.errors {
        let _ = writeln!(err, "{e}");
    }
    for f in &loaded.fallbacks {
        let _ = writeln!(
            err,
            "site {} runs on its last good configuration, {}, because its site file is \
             rejected (above); fix the file, then `systemctl daemon-reload`",
            f.site,
            f.copy.display()
        );
    }
    if loaded.errors.is_empty() {
        exit::OK
    } else {
        let _ = writeln!(
            err,
            "{} of {} site files have errors; the generator skips them until they are fixed",
            loaded.errors.len(),
            files.len()
        );
        exit::USAGE
    }
}

/// `sumctl render <site>`: prints every generated unit and the Caddy snippet.
pub fn render(root: &Root, name: &str, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let site = match load_named(root, name) {
        Ok(s) => s,
        Err((code, msg)) => {
            let _ = writeln!(err, "{msg}");
            return code;
        }
    };
    let rendered = units::render(&site);
    for u in &rendered.units {
        let _ = writeln!(out, "# /run/systemd/generator/{}\n{}", u.name, u.contents);
    }
    for (dir_name, file, contents) in &rendered.dropins {
        let _ = writeln!(
            out,
            "# /run/systemd/generator/{dir_name}/{file}\n{contents}"
        );
    }
    for (target, unit) in &rendered.wants {
        let _ = writeln!(
            out,
            "# /run/systemd/generator/{target}.wants/{unit} -> ../{unit}\n"
        );
    }
    match caddy::snippet(&site, &caddy::Served::from_disk(root, &site)) {
        Ok(text) => {
            let _ = write!(
                out,
                "# {}/{}.caddy\n{text}",
                crate::config::layout::CADDY_RUN_DIR,
                site.name
            );
            exit::OK
        }
        Err(e) => {
            let _ = writeln!(err, "site {name}: {e}");
            exit::FAILED
        }
    }
}

fn load_named(root: &Root, name: &str) -> Result<Site, (u8, String)> {
    check_site_name(name).map_err(|e| (exit::USAGE, e))?;
    let path = root.sites_dir().join(format!("{name}.toml"));
    if !path.exists() {
        return Err((
            exit::USAGE,
            format!(
                "no site `{name}`: {} does not exist (create it with `sumctl new {name} --domain … --git …`)",
                path.display()
            ),
        ));
    }
    sites::load_file(&path).map_err(|e| (exit::USAGE, e.to_string()))
}

/// `sumctl caddy-render`: the step `caddy.service` runs before start and reload.
pub fn caddy_render(root: &Root, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match caddy::render_all(root) {
        Ok(o) => {
            for p in &o.problems {
                let _ = writeln!(err, "{p}");
            }
            for k in &o.kept {
                let _ = writeln!(
                    err,
                    "site {k}: its site file is invalid, so Caddy keeps serving its last good snippet"
                );
            }
            let _ = writeln!(
                out,
                "caddy snippets: {} rendered, {} removed, {} kept",
                o.written.len(),
                o.removed.len(),
                o.kept.len()
            );
            // A bad site file must not stop Caddy from serving the good ones.
            exit::OK
        }
        Err(e) => {
            let _ = writeln!(err, "caddy render failed: {e}");
            exit::FAILED
        }
    }
}

/// Arguments of `sumctl new`.
pub struct NewSite<'a> {
    pub name: &'a str,
    pub domain: &'a str,
    pub git: &'a str,
    pub aliases: &'a [String],
}

/// `sumctl new`: writes a commented site file and a `.env` skeleton with a
/// fresh SECRET_KEY. Refuses to overwrite either; validates before writing.
pub fn new_site(root: &Root, args: &NewSite, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match new_site_inner(root, args) {
        Ok((site_file, env_file)) => {
            let _ = writeln!(
                out,
                "wrote {}\nwrote {}\n\nNext:\n  $EDITOR {} {}\n  sumctl check\n  systemctl daemon-reload",
                site_file.display(),
                env_file.display(),
                site_file.display(),
                env_file.display(),
            );
            exit::OK
        }
        Err((code, msg)) => {
            let _ = writeln!(err, "{msg}");
            code
        }
    }
}

fn new_site_inner(root: &Root, args: &NewSite) -> Result<(PathBuf, PathBuf), (u8, String)> {
    check_site_name(args.name).map_err(|e| (exit::USAGE, e))?;
    for h in std::iter::once(args.domain).chain(args.aliases.iter().map(String::as_str)) {
        check_host(h).map_err(|e| (exit::USAGE, format!("--domain/--alias: {e}")))?;
    }
    let text = site_file_text(args);
    let site_file = root.sites_dir().join(format!("{}.toml", args.name));
    // The text we are about to write must itself be valid.
    Site::parse(args.name, &site_file, &text).map_err(|e| (exit::USAGE, e.to_string()))?;

    let layout = SiteLayout::new(args.name);
    let env_file = root.path(&layout.env_file);
    for existing in [&site_file, &env_file] {
        if existing.exists() || existing.symlink_metadata().is_ok() {
            return Err((
                exit::FAILED,
                format!(
                    "{} already exists; not overwriting it (remove it first to start over)",
                    existing.display()
                ),
            ));
        }
    }
    // A host another site already has would get both sites rejected.
    let existing =
        sites::site_files(&root.sites_dir()).map_err(|e| (exit::FAILED, e.to_string()))?;
    for other in sites::load_files(&existing).sites {
        if let Some(host) = other
            .hosts()
            .find(|h| *h == args.domain || args.aliases.iter().any(|a| a == h))
        {
            return Err((
                exit::USAGE,
                format!(
                    "host `{host}` already belongs to site `{}` ({})",
                    other.name,
                    root.sites_dir()
                        .join(format!("{}.toml", other.name))
                        .display()
                ),
            ));
        }
    }

    let io = |e: std::io::Error| (exit::FAILED, e.to_string());
    let gid = if root.is_system() {
        Some(crate::system::accounts::ensure_site_account(args.name, &layout).map_err(io)?)
    } else {
        None
    };
    fs_err::create_dir_all(root.sites_dir()).map_err(io)?;
    let home = root.path(&layout.home);
    fs_err::create_dir_all(&home).map_err(io)?;
    // A last good copy of an earlier site of this name must not stand in
    // for the new one (crate::config::sites).
    let stale = root
        .path(sites::LAST_GOOD_DIR)
        .join(format!("{}.toml", args.name));
    if stale.exists() {
        fs_err::remove_file(&stale).map_err(io)?;
    }
    write_atomic(&site_file, text.as_bytes(), 0o644).map_err(io)?;
    let env = env_text(args, &random_secret().map_err(io)?);
    write_atomic(&env_file, env.as_bytes(), 0o640).map_err(io)?;
    if let Some(gid) = gid {
        nix::unistd::chown(&env_file, Some(nix::unistd::Uid::from_raw(0)), Some(gid)).map_err(
            |e| {
                (
                    exit::FAILED,
                    format!("failed to chown {}: {e}", env_file.display()),
                )
            },
        )?;
    }
    Ok((site_file, env_file))
}

fn toml_string(s: &str) -> String {
    // Validated values hold no quotes, backslashes or control characters.
    format!("\"{s}\"")
}

fn site_file_text(a: &NewSite) -> String {
    let aliases: Vec<String> = a.aliases.iter().map(|s| toml_string(s)).collect();
    let project = a.name.replace('-', "_");
    format!(
        "# Site `{name}`: see sum-site.toml(5). After editing, check it with\n\
         # `sumctl check` and apply it with `systemctl daemon-reload`.\n\
         # Secrets do not belong here: they live in /srv/sum/{name}/.env.\n\
         \n\
         domain  = {domain}\n\
         aliases = [{aliases}]          # permanently redirected to domain\n\
         \n\
         [git]\n\
         url = {git}\n\
         ref = \"main\"                  # default ref for deploys: branch, tag or sha\n\
         \n\
         [django]\n\
         # project  = \"{project}\"\n\
         # settings = \"{project}.settings.production\"\n\
         # wsgi     = \"{project}.wsgi:application\"\n\
         \n\
         [python]\n\
         # interpreter  = \"python3\"\n\
         # requirements = \"requirements.txt\"\n\
         # extra        = []            # more pip specifiers, e.g. [\"psycopg[binary]\"]\n\
         \n\
         [gunicorn]\n\
         # workers = 4\n\
         # threads = 2\n\
         # timeout = 30\n\
         \n\
         [celery]\n\
         # worker = false\n\
         # beat   = false\n\
         \n\
         [health]\n\
         # path    = \"/health/\"        # a 200 passes unless its JSON says \"unhealthy\"\n\
         # timeout = \"60s\"\n\
         \n\
         [backup]\n\
         # schedule = \"*-*-* 02:00:00 UTC\"\n\
         # keep_daily = 7\n\
         # keep_weekly = 13\n\
         # keep_monthly = 12\n\
         # ping_url = \"https://hc.example.com/ping/<uuid>\"\n\
         \n\
         [deploy]\n\
         # keep_releases = 5\n\
         # backup_before_migrate = true\n\
         # shared = []\n\
         \n\
         [sandbox]\n\
         # memory_deny_write_execute = true   # false for apps that need cffi callbacks or a JIT\n",
        name = a.name,
        domain = toml_string(a.domain),
        aliases = aliases.join(", "),
        git = toml_string(a.git),
    )
}

fn env_text(a: &NewSite, secret: &str) -> String {
    let db = a.name.replace('-', "_");
    let hosts: Vec<&str> = std::iter::once(a.domain)
        .chain(a.aliases.iter().map(String::as_str))
        .collect();
    format!(
        "# Secrets and settings of site `{name}`, read by gunicorn, celery and manage.py.\n\
         # Keep it root:sum-{name}, mode 0640: deploys refuse a group- or world-writable\n\
         # or world-readable file. systemd EnvironmentFile syntax: KEY=value, no `export`.\n\
         DATABASE_URL=postgres://{db}:CHANGE-ME@localhost:5432/{db}\n\
         SECRET_KEY={secret}\n\
         REDIS_URL=redis://localhost:6379/0\n\
         ALLOWED_HOSTS={hosts}\n",
        name = a.name,
        hosts = hosts.join(","),
    )
}

/// 50 characters from the kernel's CSPRNG, from an alphabet that needs no
/// quoting in an EnvironmentFile.
fn random_secret() -> std::io::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    let mut bytes = [0u8; 50];
    std::io::Read::read_exact(&mut fs_err::File::open("/dev/urandom")?, &mut bytes)?;
    // 64 symbols: every byte maps without bias.
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(b & 63)] as char)
        .collect())
}
