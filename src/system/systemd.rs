//! Asking systemd, one way: `systemctl` with its error said once, unit
//! properties read with `systemctl show -P`, and whether systemd itself
//! still listens on a site's socket. The deploy's control, the restore's and
//! `sumctl status` all go through here.

use std::process::Command;

/// Runs `systemctl ARGS…`; an error names the command and what systemctl said.
pub fn systemctl(args: &[&str]) -> Result<(), String> {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .map_err(|e| format!("failed to run systemctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`systemctl {}` failed: {}",
            args.join(" "),
            crate::system::text::last_lines(&String::from_utf8_lossy(&out.stderr), 3, 300)
        ))
    }
}

/// `systemctl VERB UNITS…` for a start the operator asked for (a deploy, a
/// rollback, a restore), not one of `Restart=`: the units' start-rate
/// counters are reset first (`systemctl reset-failed` does that). systemd
/// counts every start against `StartLimitBurst=` (5 in 10 s by default),
/// manual ones too, and a sixth deploy or rollback within ten seconds would
/// otherwise leave gunicorn failed with `start-limit-hit` and the site down.
/// A crash loop is still limited: `Restart=` restarts go through systemd
/// alone and keep the limit.
pub fn start_deliberately(verb: &str, units: &[String]) -> Result<(), String> {
    if units.is_empty() {
        return Ok(());
    }
    let units: Vec<&str> = units.iter().map(String::as_str).collect();
    // A unit systemd does not know has no counter; that is not an error.
    let _ = Command::new("systemctl")
        .arg("reset-failed")
        .args(&units)
        .output();
    let mut args = vec![verb];
    args.extend(&units);
    systemctl(&args)
}

/// One property of a unit, as `systemctl show -P` prints it; None when
/// systemctl fails or has no value (empty, `n/a`).
pub fn property(unit: &str, property: &str) -> Option<String> {
    let out = Command::new("systemctl")
        .args(["show", "-P", property, unit])
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !v.is_empty() && v != "n/a").then_some(v)
}

/// A time property of a unit as Unix seconds (`systemctl show
/// --timestamp=unix`); None when unset.
pub fn property_unix_time(unit: &str, property: &str) -> Option<u64> {
    let out = Command::new("systemctl")
        .args(["show", "--timestamp=unix", "-P", property, unit])
        .output()
        .ok()?;
    parse_unix_timestamp(&String::from_utf8_lossy(&out.stdout))
}

/// `systemctl show --timestamp=unix` prints `@1733459200`; None for an
/// empty, unset or zero value.
pub fn parse_unix_timestamp(shown: &str) -> Option<u64> {
    let v = shown.trim().strip_prefix('@')?;
    let secs: u64 = v.split('.').next()?.parse().ok()?;
    (secs > 0).then_some(secs)
}

/// Whether a unit is active (`systemctl is-active`).
pub fn is_active(unit: &str) -> bool {
    Command::new("systemctl")
        .args(["is-active", "--quiet", unit])
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether systemd knows the unit (LoadState `loaded`).
pub fn is_loaded(unit: &str) -> bool {
    property(unit, "LoadState").as_deref() == Some("loaded")
}

/// The inodes of the listening unix sockets bound to `path`, from the text
/// of `/proc/net/unix` (proc(5): `Num RefCount Protocol Flags Type St Inode
/// Path`; a listening socket has `__SO_ACCEPTCON`, 0x10000, in Flags).
/// Total: lines it cannot read are skipped.
pub fn listening_inodes(proc_net_unix: &str, path: &str) -> Vec<u64> {
    const SO_ACCEPTCON: u64 = 0x10000;
    proc_net_unix
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let flags = u64::from_str_radix(f.nth(3)?, 16).ok()?;
            let inode: u64 = f.nth(2)?.parse().ok()?;
            let bound = f.next()?;
            (flags & SO_ACCEPTCON != 0 && bound == path && f.next().is_none()).then_some(inode)
        })
        .collect()
}

/// Whether `pid` holds a descriptor of one of the socket `inodes`.
fn holds_socket(pid: u32, inodes: &[u64]) -> bool {
    let Ok(fds) = fs_err::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok).any(|fd| {
        fs_err::read_link(fd.path()).is_ok_and(|t| {
            let t = t.to_string_lossy();
            inodes.iter().any(|i| t == format!("socket:[{i}]"))
        })
    })
}

/// Whether systemd (PID 1) itself holds a listening socket on `path`. After
/// a daemon-reload during which the socket unit vanished (a site file that
/// was invalid for a moment), the unit comes back "active" but systemd has
/// closed its descriptor: only the running gunicorn still has one, and the
/// next gunicorn would get none.
pub fn listens_on(path: &std::path::Path) -> bool {
    let table = fs_err::read_to_string("/proc/net/unix").unwrap_or_default();
    let inodes = listening_inodes(&table, &path.to_string_lossy());
    !inodes.is_empty() && holds_socket(1, &inodes)
}

/// Makes sure the site's socket unit really listens: Ok(None) when it did,
/// Ok(Some(what was done)) after restarting it, or an error that says what
/// to run. A gunicorn started without the socket has nothing to serve.
pub fn ensure_socket(site: &str, path: &std::path::Path) -> Result<Option<String>, String> {
    let unit = format!("sum-gunicorn@{site}.socket");
    let state = property(&unit, "ActiveState").unwrap_or_else(|| "unknown".into());
    if state == "active" && listens_on(path) {
        return Ok(None);
    }
    let why = if state == "active" {
        "is active but systemd holds no listening socket (it was closed when the unit \
         vanished during a daemon-reload)"
            .to_string()
    } else {
        format!("is {state}, not listening")
    };
    // Restarting the socket restarts the service that Requires= it, so
    // the gunicorn that runs gets the new descriptor.
    let fix = format!("systemctl restart {unit}");
    start_deliberately("restart", std::slice::from_ref(&unit)).map_err(|e| {
        format!("{unit} {why}, and restarting it failed ({e}); run `{fix}` and see `journalctl -u {unit}`")
    })?;
    if !listens_on(path) {
        return Err(format!(
            "{unit} {why}, and it still does not listen on {} after a restart; run `{fix}` \
             and see `journalctl -u {unit}`",
            path.display()
        ));
    }
    Ok(Some(format!("{unit} {why}: restarted it")))
}

/// Whether the running process of an app unit started from an older
/// definition than the one systemd has loaded now: the digest the generator
/// stamps into every service (`config::layout::UNIT_DIGEST_VAR`), as the
/// process's environment has it, against the unit's `Environment=`.
/// `Some(true)` also when the process carries no digest at all (started by
/// a version that stamped none). None when that cannot be told: the unit
/// does not run, its loaded definition has no digest, or the process's
/// environment cannot be read (not root).
pub fn runs_older_definition(unit: &str) -> Option<bool> {
    let key = crate::config::layout::UNIT_DIGEST_VAR;
    let loaded = show_environment_value(&property(unit, "Environment")?, key)?;
    let pid: u32 = property(unit, "MainPID")?.parse().ok().filter(|p| *p > 0)?;
    let environ = fs_err::read(format!("/proc/{pid}/environ")).ok()?;
    Some(environ_value(&environ, key).as_deref() != Some(loaded.as_str()))
}

/// The value of `key` in a process's environment as `/proc/PID/environ`
/// holds it: `KEY=VALUE` entries, each ended by a NUL byte.
pub fn environ_value(environ: &[u8], key: &str) -> Option<String> {
    environ
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(key.as_bytes())?.strip_prefix(b"="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The value of `key` in `systemctl show -P Environment`: assignments
/// separated by spaces, one that holds a space or a quote quoted as a
/// whole. Only a plain token `KEY=VALUE` counts (the generator's digest is
/// hex and comes first); a quoted assignment never matches, so a value
/// that merely contains `KEY=` is not mistaken for it.
pub fn show_environment_value(shown: &str, key: &str) -> Option<String> {
    shown
        .split(' ')
        .find_map(|token| token.strip_prefix(key)?.strip_prefix('='))
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unset_times_are_none() {
        // What systemd 252 and 257 print for a timer that never elapsed.
        for unset in ["", "\n", "n/a", "@0", "@", "Sun 2026-12-06 04:00:00 UTC"] {
            assert_eq!(parse_unix_timestamp(unset), None, "{unset:?}");
        }
        assert_eq!(parse_unix_timestamp("@1733459200\n"), Some(1_733_459_200));
    }

    #[test]
    fn the_digest_is_read_from_a_real_environ_and_a_real_show() {
        // /proc/PID/environ of a gunicorn master under sum-gunicorn@acme.
        let environ =
            b"LANG=C.UTF-8\0PATH=/usr/bin\0SUM_UNIT_DIGEST=0123abcd4567ef89\0SUM_SITE=acme\0";
        assert_eq!(
            environ_value(environ, "SUM_UNIT_DIGEST").as_deref(),
            Some("0123abcd4567ef89")
        );
        assert_eq!(environ_value(environ, "SUM_UNIT"), None);
        assert_eq!(environ_value(b"", "SUM_UNIT_DIGEST"), None);
        // systemd 252's `systemctl show -P Environment` of the same unit.
        let shown = "SUM_UNIT_DIGEST=0123abcd4567ef89 SUM_SITE=acme \"X=a b\" STATIC_ROOT=/srv/sum/acme/static";
        assert_eq!(
            show_environment_value(shown, "SUM_UNIT_DIGEST").as_deref(),
            Some("0123abcd4567ef89")
        );
        assert_eq!(
            show_environment_value("\"X=a SUM_UNIT_DIGEST=fake\"", "SUM_UNIT_DIGEST"),
            None
        );
    }

    proptest! {
        #[test]
        fn environ_finds_exactly_its_key(
            others in proptest::collection::vec(("[A-Z_]{1,12}", "[ -~]{0,30}"), 0..8),
            at in 0usize..8,
            digest in "[0-9a-f]{16}",
        ) {
            let key = "SUM_UNIT_DIGEST";
            let mut entries: Vec<String> = others
                .iter()
                .filter(|(k, _)| k != key)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let without: Vec<u8> = entries.iter().flat_map(|e| format!("{e}\0").into_bytes()).collect();
            prop_assert_eq!(environ_value(&without, key), None);
            entries.insert(at.min(entries.len()), format!("{key}={digest}"));
            let with: Vec<u8> = entries.iter().flat_map(|e| format!("{e}\0").into_bytes()).collect();
            prop_assert_eq!(environ_value(&with, key), Some(digest));
        }

        #[test]
        fn show_finds_the_plain_digest_among_quoted_values(
            others in proptest::collection::vec(("[A-Z_]{1,12}", "[ -~]{0,30}"), 0..8),
            digest in "[0-9a-f]{16}",
        ) {
            let key = "SUM_UNIT_DIGEST";
            // As systemctl shows them: quoted when the value has a space or a quote.
            let shown_others: Vec<String> = others
                .iter()
                .map(|(k, v)| {
                    let a = format!("{k}={v}");
                    if v.contains([' ', '"', '\\', '\'']) {
                        format!("\"{}\"", a.replace('\\', "\\\\").replace('"', "\\\""))
                    } else {
                        a
                    }
                })
                .collect();
            let mut all = vec![format!("{key}={digest}")];
            all.extend(shown_others);
            prop_assert_eq!(show_environment_value(&all.join(" "), key), Some(digest));
        }
    }

    const TABLE: &str = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 45888 /run/sum/acme/gunicorn.sock
0000000000000000: 00000003 00000000 00000000 0001 03 45890 /run/sum/acme/gunicorn.sock
0000000000000000: 00000002 00000000 00010000 0001 01 45900 /run/sum/acme/gunicorn.sock.old
0000000000000000: 00000002 00000000 00010000 0001 01 45901 @/abstract
0000000000000000: 00000002 00000000 00010000 0005 01 17
";

    #[test]
    fn finds_only_listening_sockets_on_the_path() {
        assert_eq!(
            listening_inodes(TABLE, "/run/sum/acme/gunicorn.sock"),
            vec![45888]
        );
        assert_eq!(
            listening_inodes(TABLE, "/run/sum/other.sock"),
            Vec::<u64>::new()
        );
        assert_eq!(listening_inodes("", "/x"), Vec::<u64>::new());
    }

    proptest! {
        #[test]
        fn any_table_is_read_without_panicking(text in any::<String>(), path in any::<String>()) {
            let _ = listening_inodes(&text, &path);
        }

        /// Whatever `systemctl show --timestamp=unix` prints, the reader
        /// answers; a value it prints is read back exactly.
        #[test]
        fn unix_timestamps_are_read_back_and_anything_else_is_none(
            secs in 1u64..=u64::from(u32::MAX) * 4,
            micros in proptest::option::of(0u32..1_000_000),
            noise in any::<String>(),
        ) {
            let shown = match micros {
                Some(m) => format!("@{secs}.{m:06}\n"),
                None => format!("@{secs}\n"),
            };
            prop_assert_eq!(parse_unix_timestamp(&shown), Some(secs));
            let _ = parse_unix_timestamp(&noise);
            prop_assert_eq!(parse_unix_timestamp(&noise.replace('@', "")), None);
        }
    }
}
