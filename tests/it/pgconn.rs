//! The connection strings we hand to pg_dump and psql (src/pgconn.rs),
//! checked two ways: against libpq's own parser (`PQconninfoParse`, called
//! through python3's ctypes), and against a real server, where the password
//! must authenticate from the child's environment while `/proc/<pid>/cmdline`
//! of the running pg_dump and psql never shows it.

use crate::common;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::pg::Pg;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use sum::probe::pgconn::PgConn;

// ---------------------------------------------------------------------------
// Our parser against libpq's.

/// Reads NUL-separated connection strings on stdin; prints one JSON line per
/// string: libpq's keyword/value pairs, or its error.
const LIBPQ_PARSE: &str = r#"
import ctypes, ctypes.util, json, sys
lib = ctypes.CDLL(ctypes.util.find_library("pq") or "libpq.so.5")
class Opt(ctypes.Structure):
    _fields_ = [("keyword", ctypes.c_char_p), ("envvar", ctypes.c_char_p),
                ("compiled", ctypes.c_char_p), ("val", ctypes.c_char_p),
                ("label", ctypes.c_char_p), ("dispchar", ctypes.c_char_p),
                ("dispsize", ctypes.c_int)]
lib.PQconninfoParse.restype = ctypes.POINTER(Opt)
lib.PQconninfoParse.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
for s in sys.stdin.buffer.read().split(b"\0")[:-1]:
    err = ctypes.c_char_p()
    opts = lib.PQconninfoParse(s, ctypes.byref(err))
    if not opts:
        print(json.dumps({"err": (err.value or b"").decode("utf-8", "replace")}))
        continue
    got, i = {}, 0
    while opts[i].keyword:
        if opts[i].val is not None:
            got[opts[i].keyword.decode()] = opts[i].val.decode("utf-8", "replace")
        i += 1
    print(json.dumps({"ok": got}))
"#;

/// libpq's reading of each string, or None when python3 or libpq is missing.
fn libpq_parse(inputs: &[String]) -> Option<Vec<serde_json::Value>> {
    let child = Command::new("python3")
        .args(["-c", LIBPQ_PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 is required in CI"
        );
        eprintln!("note: python3 is not installed; skipping");
        return None;
    };
    let mut stdin = child.stdin.take().unwrap();
    for s in inputs {
        stdin.write_all(s.as_bytes()).unwrap();
        stdin.write_all(b"\0").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(
            e.contains("libpq") || e.contains("OSError"),
            "the libpq parse script failed: {e}"
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "libpq5 is required in CI: {e}"
        );
        eprintln!("note: libpq is not installed; skipping: {e}");
        return None;
    }
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), inputs.len());
    Some(lines)
}

/// Our reading as libpq would report it: the parameters plus the password.
fn ours(c: &PgConn) -> serde_json::Map<String, serde_json::Value> {
    let mut m: serde_json::Map<_, _> = c.params().map(|(k, v)| (k.into(), v.into())).collect();
    for (k, v) in c.env() {
        assert_eq!(k, "PGPASSWORD");
        m.insert("password".into(), v.into());
    }
    m
}

/// Why we may refuse what libpq accepts: each a deliberate refusal.
const DELIBERATE: [&str; 5] = [
    "contains `@`",                 // a raw `@` or `/` in a password would leak into argv
    "port is not a number",         // the same, as a port
    "not UTF-8",                    // values are text here
    "NUL",                          // not passable to a child at all
    "postgres:// or postgresql://", // only libpq's schemes
];

fn corpus() -> Vec<String> {
    let mut v: Vec<String> = [
        "postgres://acme:s3cret@127.0.0.1:5432/acme",
        "postgresql://us%40r:p%40ss%3Aw%2Frd%20%C3%A9@db.example:6543/my%2Fdb",
        "postgres://u:a:b@h/d",
        "postgres://acme@localhost/acme",
        "postgres://localhost",
        "postgres://",
        "postgres://u:@h/d",
        "postgres://:pw@h/d",
        "postgres://acme:old@h/acme?password=n%26w&sslmode=require&ssl=true",
        "postgres:///acme?host=/var/run/postgresql&user=acme&password=pw",
        "postgres://%2Fvar%2Frun%2Fpostgresql/acme",
        "postgres://u:pw@[::1]:5433/d",
        "postgres://u:pw@[2001:db8::7],other:5433/d",
        "postgres://u:pw@[::1/d",
        "postgres://u:pw@[]/d",
        "postgres://u:pw@[::1]x/d",
        "postgres://h/d?",
        "postgres://h/d?sslmode=disable&",
        "postgres://h/d?&",
        "postgres://h/d?a=b=c",
        "postgres://h/d?sslmode",
        "postgres://h:5432,h2:5433/d?target_session_attrs=read-write",
        r"host=127.0.0.1 port = 5432 user='ac me' password='it\'s s3cret' dbname=a\ b",
        "host=h password='open",
        "host=h dbname",
        "host='/var/run/postgresql' dbname=acme password=x",
        "user=acme password=",
        "  dbname = 'x'   ",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut runner = TestRunner::deterministic();
    let uri = (
        proptest::sample::select(vec!["postgres://", "postgresql://"]),
        "[a-z0-9:@/?&=%\\[\\],.' \\\\é]{0,30}",
    )
        .prop_map(|(p, b)| format!("{p}{b}"));
    let keywords = proptest::collection::vec(
        (
            proptest::sample::select(vec![
                "host", "port", "user", "password", "dbname", "sslmode", "options", "bad",
            ]),
            "[ ]{0,2}=[ ]{0,2}",
            "'([a-z ='\\\\]|\\\\')*'|[a-z=\\\\]{0,6}",
        ),
        1..4,
    )
    .prop_map(|kvs| {
        kvs.into_iter()
            .map(|(k, eq, v)| format!("{k}{eq}{v}"))
            .collect::<Vec<_>>()
            .join(" ")
    });
    for _ in 0..1500 {
        v.push(uri.new_tree(&mut runner).unwrap().current());
        v.push(keywords.new_tree(&mut runner).unwrap().current());
    }
    v
}

#[test]
fn our_reading_of_connection_strings_is_libpqs() {
    let inputs = corpus();
    let Some(libpq) = libpq_parse(&inputs) else {
        return;
    };
    let (mut agreed, mut refused) = (0, 0);
    for (s, theirs) in inputs.iter().zip(&libpq) {
        match (PgConn::parse(s), theirs.get("ok")) {
            (Ok(c), Some(serde_json::Value::Object(t))) => {
                let mut t = t.clone();
                // libpq stores an empty password; we drop it, as libpq
                // treats it as none when connecting.
                if t.get("password").is_some_and(|p| p == "") {
                    t.remove("password");
                }
                assert_eq!(ours(&c), t, "{s:?}");
                agreed += 1;
            }
            (Ok(c), _) => {
                // Only keywords libpq does not know pass us and fail there.
                let e = theirs["err"].as_str().unwrap_or("");
                assert!(
                    e.contains("invalid connection option")
                        || e.contains("invalid URI query parameter"),
                    "{s:?}: libpq says {e}, we read {c:?}"
                );
            }
            (Err(e), Some(_)) => {
                let e = e.to_string();
                assert!(
                    DELIBERATE.iter().any(|d| e.contains(d)),
                    "{s:?}: libpq reads it, we refuse it: {e}"
                );
                refused += 1;
            }
            (Err(_), None) => {}
        }
    }
    // The comparison must have compared something.
    assert!(agreed > 300, "only {agreed} strings both parsers accepted");
    eprintln!("{agreed} agreed, {refused} deliberately refused");
}

// ---------------------------------------------------------------------------
// A real server: the password authenticates, and is not in the process list.

/// Characters a password may hold that a URL must percent-encode.
const PASSWORD: &str = "p@ss:w/rd é%&?'s3cret";

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

struct Site {
    root: tempfile::TempDir,
    port: u16,
}

impl Site {
    fn backups(&self) -> PathBuf {
        self.root.path().join("srv/sum/acme/backups")
    }
    fn spawn(&self, bin: &str, args: &[&str]) -> Child {
        Command::new(bin)
            .args(args)
            .env("SUM_ROOT", self.root.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
    /// Holds an ACCESS EXCLUSIVE lock on `table` in `db` (as acme, over TCP,
    /// the password in the environment) until [`unblock`].
    fn block(&self, pg: &Pg, db: &str, table: &str) -> Child {
        let child = Command::new("psql")
            .args(["-X", "-q", "-h", "127.0.0.1", "-U", "acme"])
            .args(["-p", &self.port.to_string(), "-d", db, "-c"])
            .arg(format!(
                "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);"
            ))
            .env("PGPASSWORD", PASSWORD)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(pg, "the blocking lock", &format!(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
             WHERE l.mode = 'AccessExclusiveLock' AND d.datname = '{db}' AND l.granted
               AND l.relation IS NOT NULL AND l.locktype = 'relation'
               AND l.pid IN (SELECT pid FROM pg_stat_activity WHERE query LIKE 'BEGIN; LOCK TABLE%')"
        ));
        child
    }
}

fn unblock(pg: &Pg, mut blocker: Child) {
    pg.sql(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'BEGIN; LOCK TABLE%'",
    );
    let _ = blocker.wait();
}

/// Polls until `count_sql` returns a non-zero count.
fn wait_for(pg: &Pg, what: &str, count_sql: &str) {
    let t = Instant::now();
    while pg.sql("postgres", count_sql).trim() == "0" {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{what} never happened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A site `acme` whose role has [`PASSWORD`], reached over TCP (SCRAM).
fn site(pg: &Pg) -> Site {
    pg.create_site_db("acme", "initial", "acme");
    pg.sql(
        "postgres",
        &format!(
            "ALTER ROLE acme PASSWORD '{}'",
            PASSWORD.replace('\'', "''")
        ),
    );
    pg.sql(
        "acme",
        "SET ROLE acme;
         CREATE TABLE notes (id serial PRIMARY KEY, title text NOT NULL);
         INSERT INTO notes (title) SELECT 'n' || i FROM generate_series(1, 2000) i;",
    );
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL)]);
    let env = root.path().join("srv/sum/acme/.env");
    std::fs::create_dir_all(env.parent().unwrap()).unwrap();
    let url = format!(
        "postgres://acme:{}@127.0.0.1:{}/acme",
        enc(PASSWORD),
        pg.port
    );
    std::fs::write(&env, format!("DATABASE_URL={url}\n")).unwrap();
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o640)).unwrap();
    Site {
        root,
        port: pg.port,
    }
}

/// Children of `parent` whose command name is `name`, from /proc.
fn children_named(parent: u32, name: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Some((head, tail)) = stat.rsplit_once(") ") else {
            continue;
        };
        let comm = head.split_once(" (").map_or("", |(_, c)| c);
        let ppid: Option<u32> = tail.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if comm == name && ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// What /proc shows of a process: its command line (readable by everyone)
/// and its environment (by its owner and root only).
struct Seen {
    cmdline: String,
    environ: String,
    cmdline_mode: u32,
    environ_mode: u32,
    environ_owner: u32,
    uid: u32,
}

fn look_at(pid: u32) -> Option<Seen> {
    let p = |f: &str| format!("/proc/{pid}/{f}");
    let text = |f: &str| {
        std::fs::read(p(f))
            .ok()
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
    };
    let mode = |f: &str| std::fs::metadata(p(f)).ok().map(|m| m.mode() & 0o777);
    Some(Seen {
        cmdline: text("cmdline")?,
        environ: text("environ")?,
        cmdline_mode: mode("cmdline")?,
        environ_mode: mode("environ")?,
        environ_owner: std::fs::metadata(p("environ")).ok()?.uid(),
        uid: std::fs::metadata(p("")).ok()?.uid(),
    })
}

/// Asserts that nothing of the password shows in a command line.
fn assert_no_password(cmdline: &str) {
    for shown in [PASSWORD, &enc(PASSWORD), "s3cret", "p@ss", "%40ss"] {
        assert!(
            !cmdline.contains(shown),
            "the password is in the process list: {cmdline}"
        );
    }
}

/// Waits for a child `name` of `parent` whose command line contains
/// `marker`, checking every such child seen on the way; returns what /proc
/// showed of it.
fn catch_child(parent: &Child, name: &str, marker: &str, pg: &Pg, waiting: &str) -> Seen {
    let t = Instant::now();
    loop {
        for pid in children_named(parent.id(), name) {
            if let Some(seen) = look_at(pid) {
                assert_no_password(&seen.cmdline);
                // Caught it blocked on our lock: it has authenticated.
                if seen.cmdline.contains(marker) && pg.sql("postgres", waiting).trim() != "0" {
                    return seen;
                }
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no {name} child with {marker} waiting on the lock was found"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn assert_password_in_private_environment(seen: &Seen, name: &str) {
    assert_no_password(&seen.cmdline);
    assert!(
        seen.cmdline
            .contains("--dbname=user='acme' host='127.0.0.1'"),
        "not the {name} we started: {}",
        seen.cmdline
    );
    assert!(
        seen.environ.contains(&format!("PGPASSWORD={PASSWORD}")),
        "{name} did not get the password in its environment"
    );
    // Why the environment and not the command line: everyone may read the
    // one, only the process's owner (and root) the other.
    assert_eq!(seen.cmdline_mode, 0o444);
    assert_eq!(seen.environ_mode, 0o400);
    assert_eq!(seen.environ_owner, seen.uid);
}

fn finish(child: Child) -> Output {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_password(&String::from_utf8_lossy(&out.stdout));
    assert_no_password(&String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn pg_dump_gets_the_password_from_its_environment_not_its_command_line() {
    let Some(pg) = Pg::start() else { return };
    let site = site(&pg);
    // pg_dump blocks on the lock after it has authenticated, so it is
    // caught at work with the real binary's command line.
    let blocker = site.block(&pg, "acme", "notes");
    let run = site.spawn(env!("CARGO_BIN_EXE_sum-backup"), &["acme"]);
    let seen = catch_child(
        &run,
        "pg_dump",
        "--no-owner",
        &pg,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'
           AND usename = 'acme' AND client_addr IS NOT NULL AND wait_event_type = 'Lock'",
    );
    unblock(&pg, blocker);
    assert_password_in_private_environment(&seen, "pg_dump");
    // And it authenticated with it over TCP: the backup is complete.
    let out = finish(run);
    assert!(String::from_utf8_lossy(&out.stdout).contains("verified backup"));
    let dumps: Vec<_> = std::fs::read_dir(site.backups())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sql.gz"))
        .collect();
    assert_eq!(dumps.len(), 1);
    sum::backup::dump::verify_file(&dumps[0].path()).unwrap();
}

#[test]
fn psql_of_a_restore_gets_the_password_from_its_environment_not_its_command_line() {
    let Some(pg) = Pg::start() else { return };
    let site = site(&pg);
    let backup = site.spawn(env!("CARGO_BIN_EXE_sum-backup"), &["acme"]);
    finish(backup);
    // The load's `DROP OWNED BY CURRENT_USER` waits for our lock on a
    // table acme owns in the rehearsal database.
    pg.sql("postgres", "CREATE DATABASE rehearsal OWNER acme");
    pg.sql(
        "rehearsal",
        "SET ROLE acme; CREATE TABLE old (id int); INSERT INTO old VALUES (1);",
    );
    let blocker = site.block(&pg, "rehearsal", "old");
    let run = site.spawn(
        env!("CARGO_BIN_EXE_sum-restore"),
        &[
            "acme",
            "latest",
            "--i-know-this-will-overwrite",
            "--into",
            "rehearsal",
        ],
    );
    // The load's psql reads the dump on its input (`-f -`); sum-restore
    // opens and commits the transaction itself.
    let seen = catch_child(
        &run,
        "psql",
        "-f -",
        &pg,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'psql'
           AND usename = 'acme' AND datname = 'rehearsal' AND client_addr IS NOT NULL
           AND wait_event_type = 'Lock'",
    );
    unblock(&pg, blocker);
    assert_password_in_private_environment(&seen, "psql");
    assert!(
        seen.cmdline.contains("dbname='rehearsal'"),
        "{}",
        seen.cmdline
    );
    finish(run);
    assert_eq!(
        pg.sql("rehearsal", "SELECT count(*) FROM notes").trim(),
        "2000"
    );
    assert_eq!(
        pg.sql(
            "rehearsal",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'old'"
        )
        .trim(),
        "0"
    );
}
