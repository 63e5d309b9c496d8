//! The deploy's preflight (SPEC §7 step 1, after the lock): the `.env`,
//! PostgreSQL, Redis and, on a real system, the site's units, checked
//! before anything is touched; and the environment the app's code then
//! runs with, as the units give it.

use std::time::Duration;

use super::ctx::Ctx;
use crate::config::envfile;

/// Site file, `.env`, PostgreSQL, Redis and (on a real system) the units.
pub(super) fn check(ctx: &Ctx) -> Result<(Vec<(String, String)>, String), String> {
    let l = ctx.l();
    let env_path = ctx.p(&l.env_file);
    let gid = ctx.account.map(|(_, g)| g);
    let env = envfile::read(&env_path, gid).map_err(|e| e.0)?;
    let mut checked = vec!["site file", ".env"];
    // The app may name its database in other variables (`DB_NAME`, …):
    // then it is checked once the import step asks Django.
    match envfile::get(&env, "DATABASE_URL", &env_path) {
        Ok(url) => {
            let conn = crate::probe::pgconn::PgConn::parse(url).map_err(|e| e.to_string())?;
            postgres_reachable(&conn, ctx.account, "the DATABASE_URL of the site's .env")?;
            checked.push("PostgreSQL");
        }
        Err(_) => checked.push("(no DATABASE_URL: PostgreSQL checked once Django names it)"),
    }
    match envfile::get(&env, "REDIS_URL", &env_path) {
        Ok(redis) => {
            crate::probe::redis::ping(redis, Duration::from_secs(5))?;
            checked.push("Redis");
        }
        Err(_) => checked.push("(no REDIS_URL: Redis not checked)"),
    }
    if ctx.root.is_system() {
        let unit = format!("sum-gunicorn@{}.service", ctx.site.name);
        if !crate::system::systemd::is_loaded(&unit) {
            return Err(format!(
                "{unit} is not loaded: the generator has not seen {}; run `sumctl check` and \
                 `systemctl daemon-reload`",
                ctx.site.source.display()
            ));
        }
        checked.push("units");
    }
    Ok((env, format!("{} ok", checked.join(", "))))
}

/// `SELECT 1` over `conn`, as the site's user; `named_by` says where the
/// connection came from, for the error.
pub(super) fn postgres_reachable(
    conn: &crate::probe::pgconn::PgConn,
    account: Option<(u32, u32)>,
    named_by: &str,
) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("psql");
    cmd.args(["-X", "-q", "-A", "-t", "--no-password", "-c", "SELECT 1"]);
    // The password goes into psql's environment, not its command line.
    conn.apply(&mut cmd)
        .env("PGCONNECT_TIMEOUT", "5")
        .current_dir("/");
    if let Some((u, g)) = account {
        cmd.uid(u).gid(g);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("failed to run psql (apt install postgresql-client): {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let why = crate::system::text::excerpt(&String::from_utf8_lossy(&out.stderr), 300);
    Err(format!(
        "PostgreSQL is not reachable with {named_by} ({}): {why}; \
         is it running (`systemctl status postgresql`) and are the user, password and database right?",
        conn.dbname().unwrap_or("no database named: the user's")
    ))
}

/// The environment app code sees, as the units give it.
pub(super) fn app_env(ctx: &Ctx, env: &[(String, String)]) -> Vec<(String, String)> {
    let l = ctx.l();
    let mut v: Vec<(String, String)> = env.to_vec();
    v.push(("SUM_SITE".into(), ctx.site.name.clone()));
    v.push((
        "DJANGO_SETTINGS_MODULE".into(),
        ctx.site.django.settings.clone(),
    ));
    v.push((
        "STATIC_ROOT".into(),
        ctx.p(&l.static_dir).display().to_string(),
    ));
    v.push((
        "MEDIA_ROOT".into(),
        ctx.p(&l.media_dir).display().to_string(),
    ));
    // pip's cache in a directory the site user owns.
    v.push((
        "PIP_CACHE_DIR".into(),
        ctx.p(&l.venvs).join(".cache").display().to_string(),
    ));
    v.push(("HOME".into(), ctx.p(&l.home).display().to_string()));
    v
}
