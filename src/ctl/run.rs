//! `sumctl run <site> -- CMD…` and `sumctl manage <site> ARGS…`: a command
//! run exactly as gunicorn runs. The site's user, its `.env` and the unit's
//! own environment, the live release as working directory with its venv
//! first on PATH, and the gunicorn unit's sandbox. The properties are read
//! from the gunicorn unit the generator writes (`render::units`), so the
//! two can never drift. `systemd-run --wait` runs it as a transient
//! service; with a terminal on stdin the terminal is passed through
//! (`--pty`), otherwise stdin, stdout and stderr are (`--pipe`). The
//! command's exit status is ours.

use std::io::{IsTerminal, Write};
use std::process::Command;

use crate::config::layout::{Root, SiteLayout};
use crate::config::site::Site;
use crate::config::sites::load_site;
use crate::render::units;
use crate::system::failure::{exit_code, Exit, Failure};

/// The `systemd-run` arguments before the command: the gunicorn unit's
/// sandbox and identity, its environment, the live release, the venv.
pub fn systemd_run_args(site: &Site, terminal: bool, unit: &str) -> Vec<String> {
    let l = SiteLayout::new(&site.name);
    let mut args: Vec<String> = [
        "--quiet",
        "--wait",
        "--collect",
        "--service-type=exec",
        if terminal { "--pty" } else { "--pipe" },
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--unit={unit}"));
    args.push(format!("--working-directory={}", l.app));
    for (key, value) in units::sandbox_properties(site) {
        args.push(format!("--property={key}={value}"));
    }
    // The environment as values, not read back from the unit's quoting.
    for (key, value) in units::app_environment_pairs(site, &l) {
        args.push(format!("--setenv={key}={value}"));
    }
    args.push(format!("--setenv=VIRTUAL_ENV={}", l.venv));
    args.push(format!(
        "--setenv=PATH={}/bin:/usr/local/bin:/usr/bin:/bin",
        l.venv
    ));
    args
}

/// What to run: the site, the command, and `--env NAME[=VALUE]` variables.
pub struct RunArgs<'a> {
    pub site: &'a str,
    pub command: &'a [String],
    pub env: &'a [String],
}

/// `sumctl run <site> -- CMD…`: the command's exit status, or ours.
pub fn run(root: &Root, args: &RunArgs, err: &mut dyn Write) -> u8 {
    match run_command(root, args) {
        Ok(code) => code,
        Err(f) => exit_code(Err(f), err),
    }
}

/// `sumctl manage <site> ARGS…`: `python manage.py ARGS…` the same way.
pub fn manage(root: &Root, args: &RunArgs, err: &mut dyn Write) -> u8 {
    let mut command = vec!["python".to_string(), "manage.py".to_string()];
    command.extend(args.command.iter().cloned());
    let args = RunArgs {
        command: &command,
        ..*args
    };
    run(root, &args, err)
}

/// `--env NAME=VALUE` or `--env NAME` (the value of NAME in our own
/// environment). The values go to systemd-run through its environment and
/// `--setenv=NAME`, never on a command line, and only the names are logged:
/// this is how a password reaches `createsuperuser --noinput`.
pub fn env_values(specs: &[String]) -> Result<Vec<(String, String)>, Failure> {
    specs
        .iter()
        .map(|spec| {
            let (name, value) = match spec.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (spec.as_str(), None),
            };
            let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(Failure::usage(format!(
                    "--env {name}: a variable name is letters, digits and `_`"
                )));
            }
            let value = match value {
                Some(v) => v,
                None => std::env::var(name).map_err(|_| {
                    Failure::usage(format!(
                        "--env {name}: {name} is not set here; set it (e.g. `read -rs {name}; \
                         export {name}`) or give --env {name}=VALUE"
                    ))
                })?,
            };
            Ok((name.to_string(), value))
        })
        .collect()
}

fn run_command(root: &Root, args: &RunArgs) -> Result<u8, Failure> {
    let (name, command) = (args.site, args.command);
    let site = load_site(root, name).map_err(Failure::usage)?;
    let extra = env_values(args.env)?;
    if command.is_empty() {
        return Err(Failure::usage(format!(
            "sumctl run {name}: no command; give it after --, e.g. \
             `sumctl run {name} -- python manage.py shell`"
        )));
    }
    let l = SiteLayout::new(&site.name);
    if crate::system::fsutil::link_name(&root.path(&l.app)).is_none() {
        return Err(Failure::failed(format!(
            "sumctl run {name}: {name} has no live release yet; deploy it first \
             (`systemctl start sum-deploy@{name}`)"
        )));
    }
    if !root.is_system() {
        return Err(Failure::failed(format!(
            "sumctl run {name}: needs systemd; under a test root there is nothing to run in"
        )));
    }
    let command = in_venv_first(root, &l, command);
    let unit = format!("sum-run-{name}-{}", std::process::id());
    let terminal = std::io::stdin().is_terminal();
    let who = crate::system::accounts::operator();
    let mut shown = command.join(" ");
    if !extra.is_empty() {
        let names: Vec<&str> = extra.iter().map(|(n, _)| n.as_str()).collect();
        shown.push_str(&format!(" (with {})", names.join(", ")));
    }
    log(&site, &format!("sumctl run {name} by {who}: {shown}"));
    let status = Command::new("systemd-run")
        .args(systemd_run_args(&site, terminal, &unit))
        .args(extra.iter().map(|(n, _)| format!("--setenv={n}")))
        .envs(extra.iter().map(|(n, v)| (n, v)))
        .arg("--")
        .args(command)
        .status()
        .map_err(|e| {
            Failure::failed(format!("sumctl run {name}: cannot start systemd-run: {e}"))
        })?;
    let code = status.code().map_or(Exit::Failed.code(), |c| c as u8);
    log(
        &site,
        &format!("sumctl run {name} by {who}: {shown}: exit status {code}"),
    );
    Ok(code)
}

/// systemd looks the program up in its own search path, not the PATH we
/// set: a bare name the venv has (`python`, `celery`) becomes its path.
fn in_venv_first(root: &Root, l: &SiteLayout, command: &[String]) -> Vec<String> {
    let mut command = command.to_vec();
    if !command[0].contains('/') {
        let candidate = format!("{}/bin/{}", l.venv, command[0]);
        if root.path(&candidate).exists() {
            command[0] = candidate;
        }
    }
    command
}

/// One line in the journal with the site's field, so that
/// `journalctl SUM_SITE=<site>` shows who ran what and how it ended.
fn log(site: &Site, message: &str) {
    let _ = Command::new("logger")
        .args(["--journald"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            if let Some(mut stdin) = child.stdin.take() {
                let text = format!(
                    "MESSAGE={}\nSUM_SITE={}\nSYSLOG_IDENTIFIER=sumctl\n",
                    message.replace('\n', " "),
                    site.name
                );
                stdin.write_all(text.as_bytes())?;
            }
            child.wait()
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        Site::parse(
            "acme",
            std::path::Path::new("/etc/sum/sites/acme.toml"),
            "domain = \"acme.example.com\"\n[git]\nurl = \"https://example.com/acme.git\"\n",
        )
        .unwrap()
    }

    #[test]
    fn env_values_take_names_and_values() {
        let spec = |s: &[&str]| env_values(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(
            spec(&["A=1", "B_2=x=y", "C="]).unwrap(),
            [("A", "1"), ("B_2", "x=y"), ("C", "")].map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let path = std::env::var("PATH").unwrap();
        assert_eq!(spec(&["PATH"]).unwrap(), [("PATH".to_string(), path)]);
        for bad in ["1A=x", "A-B=x", "=x", "SUM_SURELY_UNSET_VARIABLE"] {
            let e = spec(&[bad]).unwrap_err();
            assert!(e.message.contains("--env"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn the_run_takes_the_gunicorn_units_sandbox_and_environment() {
        let args = systemd_run_args(&site(), false, "sum-run-acme-1");
        let has = |a: &str| args.iter().any(|x| x == a);
        for a in [
            "--pipe",
            "--wait",
            "--unit=sum-run-acme-1",
            "--working-directory=/srv/sum/acme/app",
            "--property=User=sum-acme",
            "--property=EnvironmentFile=/srv/sum/acme/.env",
            "--property=ProtectSystem=strict",
            "--property=TemporaryFileSystem=/srv/sum:ro",
            "--property=BindReadOnlyPaths=/srv/sum/acme",
            "--property=ReadWritePaths=-/srv/sum/acme/media",
            "--property=UMask=0027",
            "--property=LogExtraFields=SUM_SITE=acme",
            "--setenv=SUM_SITE=acme",
            "--setenv=MEDIA_ROOT=/srv/sum/acme/media",
            "--setenv=PATH=/srv/sum/acme/venv/bin:/usr/local/bin:/usr/bin:/bin",
        ] {
            assert!(has(a), "{a} missing from {args:?}");
        }
        for gone in ["ExecStart", "Type=", "Restart", "KillMode"] {
            assert!(!args.iter().any(|x| x.contains(gone)), "{gone} in {args:?}");
        }
        // Every sandbox line of the unit is passed on: none can drift.
        let service = units::render(&site())
            .units
            .into_iter()
            .find(|u| u.name == "sum-gunicorn@acme.service")
            .unwrap()
            .contents;
        let sandbox = service
            .lines()
            .filter(|l| l.starts_with("Protect") || l.starts_with("Private"))
            .count();
        let passed = args
            .iter()
            .filter(|a| a.starts_with("--property=Protect") || a.starts_with("--property=Private"))
            .count();
        assert!(sandbox >= 10 && sandbox == passed, "{sandbox} vs {passed}");
        assert!(systemd_run_args(&site(), true, "u").contains(&"--pty".to_string()));
    }

    #[test]
    fn a_bare_program_the_venv_has_is_taken_from_the_venv() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let l = SiteLayout::new("acme");
        fs_err::create_dir_all(root.path(format!("{}/bin", l.venv))).unwrap();
        fs_err::write(root.path(format!("{}/bin/python", l.venv)), "").unwrap();
        let cmd = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            in_venv_first(&root, &l, &cmd(&["python", "manage.py"])),
            cmd(&["/srv/sum/acme/venv/bin/python", "manage.py"])
        );
        assert_eq!(
            in_venv_first(&root, &l, &cmd(&["id", "-un"])),
            cmd(&["id", "-un"])
        );
        assert_eq!(in_venv_first(&root, &l, &cmd(&["./x"])), cmd(&["./x"]));
    }

    #[test]
    fn no_command_no_release_and_no_site_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        fs_err::create_dir_all(root.sites_dir()).unwrap();
        fs_err::write(
            root.sites_dir().join("acme.toml"),
            "domain = \"acme.example.com\"\n[git]\nurl = \"https://example.com/acme.git\"\n",
        )
        .unwrap();
        let args = |site, command: &'static [String]| RunArgs {
            site,
            command,
            env: &[],
        };
        let mut err = Vec::new();
        assert_eq!(run(&root, &args("acme", &[]), &mut err), 2);
        assert!(String::from_utf8_lossy(&err).contains("give it after --"));
        let mut err = Vec::new();
        let cmd: &'static [String] = Box::leak(Box::new(["true".to_string()]));
        assert_eq!(run(&root, &args("acme", cmd), &mut err), 1);
        assert!(String::from_utf8_lossy(&err).contains("has no live release yet"));
        let mut err = Vec::new();
        assert_eq!(manage(&root, &args("nope", cmd), &mut err), 2);
        assert!(String::from_utf8_lossy(&err).contains("no site `nope`"));
    }
}
