//! `sumctl new <site> --domain … --git …`: the `sum-<site>` account, the
//! site's home, a commented site file and a `.env` skeleton with a fresh
//! SECRET_KEY. It refuses to overwrite either file and validates the site
//! file before writing anything.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::layout::{Root, SiteLayout};
use crate::config::site::{check_host, check_site_name, Site};
use crate::config::sites;
use crate::system::failure::{exit_code, Failure};
use crate::system::fsutil::write_atomic;

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
    let result = create_site(root, args).map(|(site_file, env_file)| {
        let _ = writeln!(
            out,
            "wrote {}\nwrote {}\n\nNext:\n  \
             $EDITOR {env}    # DATABASE_URL: the site's own PostgreSQL role and database\n  \
             $EDITOR {site}\n  \
             sumctl check\n  \
             systemctl daemon-reload\n  \
             systemctl start sum-deploy@{name}\n  \
             sumctl status {name}",
            site_file.display(),
            env_file.display(),
            env = env_file.display(),
            site = site_file.display(),
            name = args.name,
        );
    });
    exit_code(result, err)
}

/// Checks everything first, then writes: the site file and the `.env`.
fn create_site(root: &Root, args: &NewSite) -> Result<(PathBuf, PathBuf), Failure> {
    let text = valid_site_file(root, args)?;
    let site_file = root.sites_dir().join(format!("{}.toml", args.name));
    let layout = SiteLayout::new(args.name);
    let env_file = root.path(&layout.env_file);
    refuse_to_overwrite(&[&site_file, &env_file])?;
    refuse_taken_hosts(root, args)?;
    write_files(root, args, &layout, &site_file, &text)?;
    Ok((site_file, env_file))
}

/// The site file's text, once the name, the host names and the text we are
/// about to write are all valid.
fn valid_site_file(root: &Root, args: &NewSite) -> Result<String, Failure> {
    check_site_name(args.name).map_err(Failure::usage)?;
    for h in std::iter::once(args.domain).chain(args.aliases.iter().map(String::as_str)) {
        check_host(h).map_err(|e| Failure::usage(format!("--domain/--alias: {e}")))?;
    }
    let text = site_file_text(args);
    let site_file = root.sites_dir().join(format!("{}.toml", args.name));
    Site::parse(args.name, &site_file, &text).map_err(|e| Failure::usage(e.to_string()))?;
    Ok(text)
}

fn refuse_to_overwrite(files: &[&Path]) -> Result<(), Failure> {
    for existing in files {
        if existing.exists() || existing.symlink_metadata().is_ok() {
            return Err(Failure::failed(format!(
                "{} already exists; not overwriting it (remove it first to start over)",
                existing.display()
            )));
        }
    }
    Ok(())
}

/// A host another site already has would get both sites rejected.
fn refuse_taken_hosts(root: &Root, args: &NewSite) -> Result<(), Failure> {
    let existing =
        sites::site_files(&root.sites_dir()).map_err(|e| Failure::failed(e.to_string()))?;
    for other in sites::load_files(&existing).sites {
        if let Some(host) = other
            .hosts()
            .find(|h| *h == args.domain || args.aliases.iter().any(|a| a == h))
        {
            return Err(Failure::usage(format!(
                "host `{host}` already belongs to site `{}` ({})",
                other.name,
                root.sites_dir()
                    .join(format!("{}.toml", other.name))
                    .display()
            )));
        }
    }
    Ok(())
}

/// The account (on a real system), the site's home, the site file and the
/// `.env`, `root:sum-<site>` 0640.
fn write_files(
    root: &Root,
    args: &NewSite,
    layout: &SiteLayout,
    site_file: &Path,
    text: &str,
) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::failed(e.to_string());
    let gid = if root.is_system() {
        Some(crate::system::accounts::ensure_site_account(args.name, layout).map_err(io)?)
    } else {
        None
    };
    fs_err::create_dir_all(root.sites_dir()).map_err(io)?;
    fs_err::create_dir_all(root.path(&layout.home)).map_err(io)?;
    // A last good copy of an earlier site of this name must not stand in
    // for the new one (crate::config::sites).
    let stale = root
        .path(sites::LAST_GOOD_DIR)
        .join(format!("{}.toml", args.name));
    if stale.exists() {
        fs_err::remove_file(&stale).map_err(io)?;
    }
    write_atomic(site_file, text.as_bytes(), 0o644).map_err(io)?;
    let env_file = root.path(&layout.env_file);
    let env = env_text(args, &random_secret().map_err(io)?);
    write_atomic(&env_file, env.as_bytes(), 0o640).map_err(io)?;
    if let Some(gid) = gid {
        nix::unistd::chown(&env_file, Some(nix::unistd::Uid::from_raw(0)), Some(gid))
            .map_err(|e| Failure::failed(format!("failed to chown {}: {e}", env_file.display())))?;
    }
    Ok(())
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
         # Your settings read their own names: many projects read DJANGO_SECRET_KEY\n\
         # and DJANGO_ALLOWED_HOSTS instead. Rename these two lines to the names your\n\
         # settings.py reads (grep -n environ yourproject/settings*), or add both.\n\
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
