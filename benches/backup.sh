#!/usr/bin/env bash
# Benchmark of sum-backup and sum-restore against the plain shell pipelines
# they replace, on a throwaway PostgreSQL cluster with a database of >= 1 GB.
#
#   sudo bash benches/backup.sh                  # full size (~1.4 GB database)
#   sudo BENCH_SCALE=5 bash benches/backup.sh    # quick run (~100 MB)
#
# It starts its own cluster (initdb as the `postgres` user in a directory under
# /var/tmp, on a free loopback port), loads a database (pgbench -i plus a
# text-heavy table of blog-post-like rows: words, hashes, JSON), and measures
# in the same run, interleaved, median of the runs:
#
#   backup   sum-backup SITE (SUM_ROOT layout under the work directory)
#            vs  the floor: pg_dump --format=plain --no-owner --no-acl -f file
#                (what the server can produce, with nothing compressed or
#                checked)
#            and pg_dump --format=plain --no-owner --no-acl | gzip -6 > file
#            and pg_dump -Fc (reference only)
#   memory   peak RSS of sum-backup: GNU time %M (the largest of sum-backup and
#            the pg_dump it waits for), and sum-backup's own VmHWM sampled from
#            /proc, on the large database and on a small one (BENCH_SMALL_SCALE)
#   restore  sum-restore SITE FILE --i-know-this-will-overwrite --into scratch
#            vs  gunzip -c FILE | psql --single-transaction -v ON_ERROR_STOP=1 -q
#            (same file, the one sum-backup wrote; fresh scratch database owned
#            by the site's user each time, dropped afterwards)
#            and the floor: psql --single-transaction -f FILE.sql, the same
#                dump decompressed beforehand (what the server can load);
#            after one untimed warm-up load; and for each restore the CPU
#            time of the load's backend, as the server logs it
#            (log_statement_stats), beside the wall time
#   context  gzip -1/-3/-6 of the floor's plain file
#
# and prints ratios against the baseline with the targets and PASS/MISS. It is
# a benchmark, not a test: it exits 0 whether the targets are met or not (and
# non-zero only if something broke).
#
# What differs between the sides, by design: sum-backup also decodes its
# gzip stream in step as it writes (a second thread), hashes the file in
# 1 MiB parts, fsyncs it, re-reads it from storage against that hash and
# writes a manifest before publishing; the baselines do none of this.
# sum-restore also checks the manifest and the file's first and last parts
# before it starts, checks each part before psql reads it, and runs
# `DROP OWNED BY CURRENT_USER` in the load's transaction, which commits only
# when all of it matched.
#
# The cluster runs with fsync=off and full_page_writes=off (as the tests do):
# it makes loading and restores faster and the numbers less noisy, and touches
# both sides of each comparison alike, but absolute restore times are lower
# than on a server that fsyncs. BENCH_FSYNC=on keeps PostgreSQL's defaults.
#
# Environment:
#   BENCH_SCALE          pgbench scale of the main database (default 70, ~1.4 GB
#                        with the text table)
#   BENCH_TEXT_ROWS      rows of the text table (default BENCH_SCALE * 2700,
#                        about 5 MB per pgbench scale unit)
#   BENCH_SMALL_SCALE    scale of the second, small database used to see whether
#                        sum-backup's RSS grows with the database (default 5;
#                        0 skips it)
#   BENCH_RUNS           backup runs per tool (default 3; at least 2)
#   BENCH_RESTORE_RUNS   restore runs per tool (default 3; at least 2)
#   BENCH_FSYNC          off (default) or on
#   BENCH_TMPDIR         where the cluster and dumps live (default /var/tmp)
#   BENCH_KEEP_PLAIN     keep the plain dump of the context step at this path
#   SUM_BIN_DIR          take sum-backup and sum-restore from here instead of
#                        building them with cargo
set -euo pipefail
shopt -s inherit_errexit

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCALE=${BENCH_SCALE:-70}
TEXT_ROWS=${BENCH_TEXT_ROWS:-$((SCALE * 2700))}
SMALL_SCALE=${BENCH_SMALL_SCALE:-5}
RUNS=${BENCH_RUNS:-3}
RESTORE_RUNS=${BENCH_RESTORE_RUNS:-3}
FSYNC=${BENCH_FSYNC:-off}
BASE_TMP=${BENCH_TMPDIR:-/var/tmp}

# Targets (ratios against the baseline measured in this run).
T_BACKUP_FLOOR=1.5
T_BACKUP_TIME=0.6
T_BACKUP_SIZE=1.10
T_RSS_MIB=64
T_RESTORE_TIME=1.0

die() {
    echo "backup.sh: $*" >&2
    exit 1
}
note() { echo "[$(date +%H:%M:%S)] $*" >&2; }

[[ $EUID -eq 0 ]] || die "run as root (the cluster runs as the postgres user via runuser)"
[[ $FSYNC == on || $FSYNC == off ]] || die "BENCH_FSYNC must be on or off"
((RUNS >= 2 && RESTORE_RUNS >= 2)) || die "BENCH_RUNS and BENCH_RESTORE_RUNS must be at least 2"
((SCALE >= 1)) || die "BENCH_SCALE must be at least 1"
if ((SMALL_SCALE >= SCALE)); then
    SMALL_SCALE=0 # nothing to compare against
fi
id postgres >/dev/null 2>&1 || die "the postgres user is missing (apt-get install postgresql)"

pg_bin=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
[[ -n $pg_bin && -x $pg_bin/initdb ]] || die "no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)"
PATH="$pg_bin:$PATH" # pg_dump, psql and pgbench of the same major version as the server

missing=()
command -v pgbench >/dev/null || missing+=(postgresql-contrib)
[[ -x /usr/bin/time ]] || missing+=(time)
if ((${#missing[@]})); then
    note "installing ${missing[*]}"
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v pgbench >/dev/null || die "pgbench is missing"

start_epoch=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

work=$(mktemp -d "$BASE_TMP/sum-backup-bench.XXXXXX")
chmod 0755 "$work"
pgdir="$work/pg"
pg_started=false
# This script's own descendants, children after their own children, into
# the array `tree` (built in this shell, so no helper subshell is listed).
tree=()
# shellcheck disable=SC2317 # invoked by cleanup, which the trap invokes
collect_tree() { # PID
    local c
    for c in $(pgrep -P "$1" 2>/dev/null); do
        collect_tree "$c"
        tree+=("$c")
    done
}
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    # A background load or a sampled sum-backup may still run (after a signal
    # or a failure): stop them before their cluster and files go away.
    tree=()
    collect_tree $$
    if ((${#tree[@]})); then
        kill -TERM "${tree[@]}" 2>/dev/null
        sleep 1
        kill -KILL "${tree[@]}" 2>/dev/null
    fi
    if $pg_started; then
        runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1
    fi
    rm -rf -- "$work"
    [[ ! -e $work ]] || echo "backup.sh: could not remove $work" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# --- binaries ---------------------------------------------------------------
# Copied into the work directory so that a rebuild by someone else during the
# run cannot swap the binary being measured.
mkdir "$work/bin"
if [[ -n ${SUM_BIN_DIR:-} ]]; then
    src_bin=$SUM_BIN_DIR
else
    note "building: cargo build --release --bin sum-backup --bin sum-restore"
    cargo build --quiet --release --bin sum-backup --bin sum-restore
    src_bin=$PWD/target/release
fi
[[ -x $src_bin/sum-backup && -x $src_bin/sum-restore ]] ||
    die "no sum-backup and sum-restore binaries in $src_bin"
cp "$src_bin/sum-backup" "$src_bin/sum-restore" "$work/bin/"
BIN=$work/bin

# --- cluster ----------------------------------------------------------------
port=""
for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 30000))
    # Nothing listening there: the connection is refused.
    if ! (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        port=$p
        break
    fi
done
[[ -n $port ]] || die "no free port found"

mkdir "$pgdir"
chown postgres:postgres "$pgdir"
note "initdb in $pgdir (port $port, fsync=$FSYNC)"
runuser -u postgres -- "$pg_bin/initdb" -D "$pgdir/data" -U postgres \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$work/initdb.log" 2>&1 ||
    die "initdb failed: $(tail -n 5 "$work/initdb.log")"
pg_opts="-p $port -k $pgdir -c listen_addresses=127.0.0.1 -c max_wal_size=4GB -c shared_buffers=256MB"
if [[ $FSYNC == off ]]; then
    pg_opts+=" -c fsync=off -c full_page_writes=off"
fi
pg_started=true
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pgdir/data" -o "$pg_opts" -l "$pgdir/log" -w start >/dev/null ||
    die "pg_ctl start failed: $(tail -n 5 "$pgdir/log")"

su_sql() { # DB SQL: as the superuser over the socket; prints the result
    psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$pgdir" -p "$port" -U postgres -d "$1" -c "$2"
}

DB_USER=bench
DB_PW=bench-pw-$RANDOM$RANDOM
url_of() { echo "postgres://$DB_USER:$DB_PW@127.0.0.1:$port/$1"; }
su_sql postgres "CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PW'" >/dev/null

# The text table: what a CMS's content looks like. Titles and bodies are words
# drawn at random from a vocabulary, with hashes, paragraph markup and links
# mixed in; slugs, timestamps and a JSON column beside them. Compresses about
# like real text (about 2.7x with gzip -6), not like repeated bytes.
text_table_sql() { # ROWS
    cat <<SQL
CREATE TABLE bench_post (
    id bigserial PRIMARY KEY,
    title text NOT NULL,
    slug text NOT NULL,
    author_id int NOT NULL,
    created timestamptz NOT NULL,
    body text NOT NULL,
    meta jsonb NOT NULL
);
WITH v AS (
    SELECT w, cardinality(w) AS n
    FROM string_to_array(
        'the of and to in is that for it as was with be by on not he this are or his from at which but '
        'have an they you were her she there been one all we their has would when if so what can more '
        'will about up out them into some could him other time than then only its two may first new also '
        'after any these people over use most such made where how our years city page site house world '
        'report school water system program question government number night point home service group '
        'market money company study business issue side kind head member family student problem lot '
        'country week area month right book job word eye fact child story team minute idea body history '
        'information power party change reason research girl guy moment air teacher force education '
        'django python server database backup restore deploy release static media template model view '
        'query index table column migration request response session cache worker queue celery redis '
        'postgres caddy systemd socket timer service unit admin user login password email newsletter '
        'article event calendar gallery image video download upload search result filter category tag '
        'author comment review rating price order cart checkout payment invoice customer address phone '
        'Amsterdam Berlin London Paris Madrid Lisbon Vienna Prague Warsaw Oslo Stockholm Helsinki Dublin '
        'January February March April May June July August September October November December 2019 2020 '
        '2021 2022 2023 2024 2025 however therefore meanwhile although because whether without against',
        ' ') AS w
)
INSERT INTO bench_post (title, slug, author_id, created, body, meta)
SELECT t.title,
       lower(replace(t.title, ' ', '-')) || '-' || left(md5(g::text), 8),
       1 + (g * 7) % 500,
       timestamptz '2019-01-01 00:00:00+00' + g * interval '97 seconds' + random() * interval '90 seconds',
       b.body,
       jsonb_build_object(
           'views', (random() * 100000)::int,
           'lang', (ARRAY['en', 'de', 'fr', 'nl', 'es'])[1 + g % 5],
           'draft', g % 11 = 0,
           'revision', md5(g::text || 'rev'),
           'tags', (SELECT to_jsonb(array_agg(v.w[k]))
                    FROM (SELECT 1 + floor(random() * v.n)::int AS k FROM generate_series(1, 1 + g % 4)) AS tk))
FROM generate_series(1, $1) AS g
CROSS JOIN v
-- Each lateral subquery names g, so it runs again for every row. The
-- aggregates' arguments name a column of their own level (k, i, r), else
-- PostgreSQL would evaluate them at the outer level.
CROSS JOIN LATERAL (
    SELECT initcap(string_agg(v.w[k], ' ')) AS title
    FROM (SELECT 1 + floor(random() * v.n)::int AS k FROM generate_series(1, 3 + g % 7)) AS tk
) AS t
CROSS JOIN LATERAL (
    SELECT '<p>' || string_agg(
        CASE
            WHEN i % 45 = 0 THEN '</p>' || chr(10) || '<p>'
            WHEN r < 0.03 THEN md5(r::text)
            WHEN r < 0.04 THEN '<a href="https://example.com/' || left(md5(i::text || g::text), 10) || '/">'
                               || v.w[1 + (i * 31 + g) % v.n] || '</a>'
            WHEN r < 0.06 THEN (r * 100000)::int::text
            ELSE v.w[1 + floor(random() * v.n)::int]
        END, ' ' ORDER BY i) || '</p>' AS body
    FROM (SELECT i, random() AS r FROM generate_series(1, 60 + (g * 7919) % 480) AS i) AS words
) AS b;
ANALYZE bench_post;
SQL
}

DB_SIZE=0
make_db() { # DB SCALE TEXT_ROWS
    local db=$1 scale=$2 rows=$3 pid
    su_sql postgres "CREATE DATABASE $db OWNER $DB_USER" >/dev/null
    note "loading $db: pgbench -i -s $scale and $rows text rows (in parallel)"
    # Server-side generation (G); as the site's user, so the site owns it all.
    PGPASSWORD=$DB_PW pgbench -i -q -I dtGvp -s "$scale" -h 127.0.0.1 -p "$port" -U "$DB_USER" "$db" \
        >"$work/pgbench-$db.log" 2>&1 &
    pid=$!
    text_table_sql "$rows" | PGPASSWORD=$DB_PW psql -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$port" -U "$DB_USER" -d "$db" >/dev/null
    wait "$pid" || die "pgbench -i failed: $(tail -n 5 "$work/pgbench-$db.log")"
    su_sql "$db" "VACUUM (FREEZE, ANALYZE)" >/dev/null
    su_sql postgres "CHECKPOINT" >/dev/null
    DB_SIZE=$(su_sql postgres "SELECT pg_database_size('$db')")
}

# A site under SUM_ROOT whose DATABASE_URL points at DB.
make_site() { # ROOT SITE DB
    local root=$1 site=$2 db=$3
    mkdir -p "$root/etc/sum/sites" "$root/srv/sum/$site"
    printf 'domain = "%s.example.com"\n[git]\nurl = "https://x.example/%s.git"\n' "$site" "$site" \
        >"$root/etc/sum/sites/$site.toml"
    (
        umask 0027
        printf 'DATABASE_URL=%s\n' "$(url_of "$db")" >"$root/srv/sum/$site/.env"
    )
    chmod 0640 "$root/srv/sum/$site/.env"
}

rows_of() { # DB: pgbench_accounts and bench_post row counts
    su_sql "$1" "SELECT (SELECT count(*) FROM pgbench_accounts) || ' ' || (SELECT count(*) FROM bench_post)"
}

# --- measuring helpers --------------------------------------------------------
# Each prints one line of numbers; the command's own output goes to a log that
# is shown if it fails.
timed() { # CMD...: runs it under GNU time; prints "seconds max_rss_kib"
    local tf=$work/time.out
    if ! /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$work/cmd.log" 2>&1; then
        echo "backup.sh: failed: $*" >&2
        tail -n 20 "$work/cmd.log" "$tf" >&2
        return 1
    fi
    tail -n 1 "$tf"
}

# sum-backup under GNU time, with its own VmHWM sampled from /proc every
# 0.1 s (GNU time's %M also covers the pg_dump it waits for). Prints
# "seconds max_rss_kib own_hwm_kib".
timed_sum_backup() { # ROOT SITE
    local tf=$work/time.out tpid cpid="" hwm=0 k v _rest
    /usr/bin/time -f '%e %M' -o "$tf" env SUM_ROOT="$1" "$BIN/sum-backup" "$2" >"$work/cmd.log" 2>&1 &
    tpid=$!
    while kill -0 "$tpid" 2>/dev/null; do
        if [[ -z $cpid ]]; then
            cpid=$(pgrep -P "$tpid" | head -n 1 || true)
        fi
        if [[ -n $cpid && -r /proc/$cpid/status ]]; then
            while read -r k v _rest; do
                if [[ $k == VmHWM: ]] && ((v > hwm)); then hwm=$v; fi
            done <"/proc/$cpid/status" 2>/dev/null || true
        fi
        sleep 0.1
    done
    if ! wait "$tpid"; then
        echo "backup.sh: sum-backup $2 failed:" >&2
        tail -n 20 "$work/cmd.log" >&2
        return 1
    fi
    echo "$(tail -n 1 "$tf") $hwm"
}

median() { # numbers as arguments; as given, or their mean without exponent notation
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2); if (NR % 2) print v[m]; else printf "%.15g\n", (v[m] + v[m + 1]) / 2 }'
}
fsize() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
kmib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
verdict() { # VALUE TARGET: PASS when VALUE <= TARGET
    awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? "PASS" : "MISS" }'
}

# --- data -------------------------------------------------------------------
root=$work/root
out=$work/out
mkdir -p "$root" "$out"
t0=$(date +%s)
make_db bench "$SCALE" "$TEXT_ROWS"
big_size=$DB_SIZE
big_rows=$(rows_of bench)
make_site "$root" bench bench
small_size=0
if ((SMALL_SCALE > 0)); then
    make_db bench_small "$SMALL_SCALE" $((SMALL_SCALE * TEXT_ROWS / SCALE))
    small_size=$DB_SIZE
    make_site "$root" benchsmall bench_small
fi
load_secs=$(($(date +%s) - t0))
note "database bench: $(mib "$big_size") MiB (pg_database_size), loaded in ${load_secs}s"
URL=$(url_of bench)
backups=$root/srv/sum/bench/backups

# Warm-up: one dump to nowhere, so that every timed run reads a warm cache.
note "warm-up dump"
pg_dump --format=plain --no-owner --no-acl --dbname="$URL" >/dev/null

# --- backups ------------------------------------------------------------------
sb_t=() sb_m=() sb_h=() sb_s=()
fl_t=() fl_s=()
bl_t=() bl_m=() bl_s=()
fc_t=() fc_s=()
last_backup=""
backup_run() { # sum|base|fc
    local res t m h
    case $1 in
        sum)
            rm -f -- "$backups"/bench-*
            res=$(timed_sum_backup "$root" bench)
            read -r t m h <<<"$res"
            last_backup=$(find "$backups" -maxdepth 1 -name 'bench-*.sql.gz' | head -n 1)
            [[ -n $last_backup ]] || die "sum-backup wrote no backup: $(cat "$work/cmd.log")"
            sb_t+=("$t") sb_m+=("$m") sb_h+=("$h") sb_s+=("$(fsize "$last_backup")")
            ;;
        floor)
            rm -f -- "$out/plain.sql"
            res=$(timed pg_dump --format=plain --no-owner --no-acl --dbname="$URL" -f "$out/plain.sql")
            read -r t _ <<<"$res"
            fl_t+=("$t") fl_s+=("$(fsize "$out/plain.sql")")
            ;;
        base)
            rm -f -- "$out/base.sql.gz"
            # shellcheck disable=SC2016 # expanded by the inner bash
            res=$(timed bash -c 'set -o pipefail; pg_dump --format=plain --no-owner --no-acl --dbname="$1" | gzip -6 >"$2"' \
                _ "$URL" "$out/base.sql.gz")
            read -r t m <<<"$res"
            bl_t+=("$t") bl_m+=("$m") bl_s+=("$(fsize "$out/base.sql.gz")")
            ;;
        fc)
            rm -f -- "$out/base.dump"
            res=$(timed pg_dump -Fc --no-owner --no-acl --dbname="$URL" -f "$out/base.dump")
            read -r t _ <<<"$res"
            fc_t+=("$t") fc_s+=("$(fsize "$out/base.dump")")
            ;;
    esac
}
declare -A label=([sum]="sum-backup" [floor]="pg_dump to a plain file" [base]="pg_dump | gzip -6" [fc]="pg_dump -Fc")
for ((r = 1; r <= RUNS; r++)); do
    # Alternate the order so that neither side always runs first.
    order=(sum floor base fc)
    if ((r % 2 == 0)); then order=(floor base fc sum); fi
    for which in "${order[@]}"; do
        note "backup run $r/$RUNS: ${label[$which]}"
        backup_run "$which"
    done
done
rm -f -- "$out/base.dump" "$out/base.sql.gz"
uncompressed=$(sed -n 's/.*"uncompressed_size": *\([0-9]*\).*/\1/p' "$last_backup.json")

# sum-backup's RSS on the small database, for the growth check.
sm_m=() sm_h=()
if ((SMALL_SCALE > 0)); then
    for ((r = 1; r <= RUNS; r++)); do
        note "small database run $r/$RUNS: sum-backup"
        rm -f -- "$root"/srv/sum/benchsmall/backups/benchsmall-*
        res=$(timed_sum_backup "$root" benchsmall)
        read -r _ m h <<<"$res"
        sm_m+=("$m") sm_h+=("$h")
    done
fi

# --- restores ---------------------------------------------------------------
sr_t=() gr_t=() pr_t=() sr_c=() gr_c=() pr_c=()
n=0
# The floor loads the same dump, decompressed beforehand (and in the page
# cache for every run alike).
gunzip -c "$last_backup" >"$out/restore.sql"
# Warm-up: one untimed load, so that the first timed restore does not meet
# the backups' writes still being flushed, whichever tool runs first.
note "warm-up load"
su_sql postgres "CREATE DATABASE warmup OWNER $DB_USER" >/dev/null
psql -X --single-transaction -v ON_ERROR_STOP=1 -q --dbname="$(url_of warmup)" -f "$out/restore.sql" >/dev/null
su_sql postgres "DROP DATABASE warmup" >/dev/null
su_sql postgres "CHECKPOINT" >/dev/null
# From here on the server logs each statement's resource use (getrusage of
# its backend), so that each restore's server-side CPU can be read back:
# what the load costs the server, whichever client feeds it.
su_sql postgres "ALTER SYSTEM SET log_statement_stats = on" >/dev/null
su_sql postgres "ALTER SYSTEM SET log_line_prefix = '%m [%p] db=%d '" >/dev/null
su_sql postgres "SELECT pg_reload_conf()" >/dev/null
backend_cpu() { # DB: CPU seconds (user + system) of the backends' statements in DB
    awk -v db=" db=$1 " '
        /^[0-9][0-9][0-9][0-9]-/ { mine = index($0, db) > 0 }
        mine && /s user, .* s system, .* s elapsed/ {
            sub(/^[ \t]*![ \t]*/, ""); cpu += $1 + $4
        }
        END { printf "%.2f", cpu }' "$pgdir/log"
}
restore_check() { # DB: the restored row counts must match; then drop it
    local got
    got=$(rows_of "$1")
    [[ $got == "$big_rows" ]] || die "restored $1 has rows '$got', expected '$big_rows'"
    su_sql postgres "DROP DATABASE $1" >/dev/null
    su_sql postgres "CHECKPOINT" >/dev/null
}
for ((r = 1; r <= RESTORE_RUNS; r++)); do
    order=(sum base floor)
    if ((r % 2 == 0)); then order=(base floor sum); fi
    for which in "${order[@]}"; do
        n=$((n + 1))
        db=scratch$n
        su_sql postgres "CREATE DATABASE $db OWNER $DB_USER" >/dev/null
        if [[ $which == sum ]]; then
            note "restore run $r/$RESTORE_RUNS: sum-restore --into $db"
            res=$(timed env SUM_ROOT="$root" "$BIN/sum-restore" bench "$last_backup" \
                --i-know-this-will-overwrite --into "$db")
            read -r t _ <<<"$res"
            sr_t+=("$t") sr_c+=("$(backend_cpu "$db")")
        elif [[ $which == floor ]]; then
            note "restore run $r/$RESTORE_RUNS: psql --single-transaction -f FILE.sql"
            res=$(timed psql -X --single-transaction -v ON_ERROR_STOP=1 -q --dbname="$(url_of "$db")" \
                -f "$out/restore.sql")
            read -r t _ <<<"$res"
            pr_t+=("$t") pr_c+=("$(backend_cpu "$db")")
        else
            note "restore run $r/$RESTORE_RUNS: gunzip -c | psql --single-transaction"
            # shellcheck disable=SC2016 # expanded by the inner bash
            res=$(timed bash -c 'set -o pipefail; gunzip -c "$1" | psql -X --single-transaction -v ON_ERROR_STOP=1 -q --dbname="$2"' \
                _ "$last_backup" "$(url_of "$db")")
            read -r t _ <<<"$res"
            gr_t+=("$t") gr_c+=("$(backend_cpu "$db")")
        fi
        restore_check "$db"
    done
done

rm -f -- "$out/restore.sql"

# --- compression alone, for the choice of gzip level ------------------------
note "context: gzip -1/-3/-6 of the floor's plain file"
plain_s=$(fsize "$out/plain.sql")
cat "$out/plain.sql" >/dev/null # in the page cache for every level alike
declare -A gz_t gz_s
for lvl in 1 3 6; do
    # shellcheck disable=SC2016 # expanded by the inner bash
    res=$(timed bash -c 'gzip -"$1" -c "$2" >"$3"' _ "$lvl" "$out/plain.sql" "$out/plain.$lvl.gz")
    read -r t _ <<<"$res"
    gz_t[$lvl]=$t
    gz_s[$lvl]=$(fsize "$out/plain.$lvl.gz")
    rm -f -- "$out/plain.$lvl.gz"
done
# shellcheck disable=SC2016 # expanded by the inner bash
res=$(timed bash -c 'gunzip -c "$1" >/dev/null' _ "$last_backup")
read -r gunzip_t _ <<<"$res"
if [[ -n ${BENCH_KEEP_PLAIN:-} ]]; then
    mv -- "$out/plain.sql" "$BENCH_KEEP_PLAIN"
else
    rm -f -- "$out/plain.sql"
fi

# --- report -----------------------------------------------------------------
total_secs=$(($(date +%s) - start_epoch))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

SB_T=$(median "${sb_t[@]}") BL_T=$(median "${bl_t[@]}") FC_T=$(median "${fc_t[@]}") FL_T=$(median "${fl_t[@]}")
SB_S=$(median "${sb_s[@]}") BL_S=$(median "${bl_s[@]}") FC_S=$(median "${fc_s[@]}")
SB_M=$(median "${sb_m[@]}") SB_H=$(median "${sb_h[@]}") BL_M=$(median "${bl_m[@]}")
SR_T=$(median "${sr_t[@]}") GR_T=$(median "${gr_t[@]}") PR_T=$(median "${pr_t[@]}")

echo
echo "== sum-backup / sum-restore benchmark ($(date -u +%Y-%m-%dT%H:%M:%SZ)) =="
echo "machine:   $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM; load average $load_start at start, $load_end at end"
echo "server:    $(su_sql postgres 'SHOW server_version'), fsync=$FSYNC, work dir on $(df --output=source "$work" | tail -n 1) ($work)"
echo "database:  bench = pgbench scale $SCALE + $TEXT_ROWS text rows: $big_size bytes ($(mib "$big_size") MiB, pg_database_size)"
if ((SMALL_SCALE > 0)); then
    echo "           bench_small = pgbench scale $SMALL_SCALE: $small_size bytes ($(mib "$small_size") MiB)"
fi
echo "dump:      $uncompressed bytes uncompressed ($(mib "$uncompressed") MiB plain SQL)"
echo "runs:      $RUNS per backup tool, $RESTORE_RUNS per restore tool, interleaved; medians below"
echo "load:      ${load_secs}s; total run time ${total_secs}s ($((total_secs / 60))m$((total_secs % 60))s)"
echo
echo "samples (seconds / bytes / KiB):"
echo "  sum-backup          time ${sb_t[*]}  size ${sb_s[*]}  %M ${sb_m[*]}  own VmHWM ${sb_h[*]}"
echo "  pg_dump -f (floor)  time ${fl_t[*]}  size ${fl_s[*]}"
echo "  pg_dump | gzip -6   time ${bl_t[*]}  size ${bl_s[*]}  %M ${bl_m[*]}"
echo "  pg_dump -Fc         time ${fc_t[*]}  size ${fc_s[*]}"
if ((SMALL_SCALE > 0)); then
    echo "  sum-backup (small)  %M ${sm_m[*]}  own VmHWM ${sm_h[*]}"
fi
echo "  sum-restore --into  time ${sr_t[*]}"
echo "  gunzip -c | psql    time ${gr_t[*]}"
echo "  psql -f (floor)     time ${pr_t[*]}"
echo "  the load's backend, CPU seconds: sum-restore ${sr_c[*]}; gunzip | psql ${gr_c[*]}; psql -f ${pr_c[*]}"
echo
printf '%-34s %12s %12s %8s %10s  %s\n' "measure" "sum" "baseline" "ratio" "target" "verdict"
printf '%-34s %12s %12s %8s %10s  %s\n' "backup time vs floor (s)" "$SB_T" "$FL_T" \
    "$(ratio "$SB_T" "$FL_T")" "<= $T_BACKUP_FLOOR" "$(verdict "$(ratio "$SB_T" "$FL_T")" "$T_BACKUP_FLOOR")"
printf '%-34s %12s %12s %8s %10s  %s\n' "backup time vs gzip -6 pipeline (s)" "$SB_T" "$BL_T" \
    "$(ratio "$SB_T" "$BL_T")" "<= $T_BACKUP_TIME" "$(verdict "$(ratio "$SB_T" "$BL_T")" "$T_BACKUP_TIME")"
printf '%-34s %12s %12s %8s %10s  %s\n' "backup size (MiB)" "$(mib "$SB_S")" "$(mib "$BL_S")" \
    "$(ratio "$SB_S" "$BL_S")" "<= $T_BACKUP_SIZE" "$(verdict "$(ratio "$SB_S" "$BL_S")" "$T_BACKUP_SIZE")"
printf '%-34s %12s %12s %8s %10s  %s\n' "peak RSS, GNU time %M (MiB)" "$(kmib "$SB_M")" "$(kmib "$BL_M")" \
    "-" "<= $T_RSS_MIB MiB" "$(verdict "$(kmib "$SB_M")" "$T_RSS_MIB")"
printf '%-34s %12s %12s %8s %10s  %s\n' "  sum-backup's own VmHWM (MiB)" "$(kmib "$SB_H")" "" "" "" ""
if ((SMALL_SCALE > 0)); then
    SM_M=$(median "${sm_m[@]}") SM_H=$(median "${sm_h[@]}")
    # "Not growing": at most 10% or 4 MiB (whichever is larger) above the small database's.
    grow_ok=$(awk -v a="$SB_M" -v b="$SM_M" 'BEGIN { m = b * 0.10; if (m < 4096) m = 4096; print (a - b <= m) ? "PASS" : "MISS" }')
    printf '%-34s %12s %12s %8s %10s  %s\n' "RSS %M, $(mib "$big_size") vs $(mib "$small_size") MiB db" \
        "$(kmib "$SB_M")" "$(kmib "$SM_M")" "$(ratio "$SB_M" "$SM_M")" "flat" "$grow_ok"
    printf '%-34s %12s %12s %8s %10s  %s\n' "  own VmHWM, large vs small db" \
        "$(kmib "$SB_H")" "$(kmib "$SM_H")" "$(ratio "$SB_H" "$SM_H")" "" ""
fi
printf '%-34s %12s %12s %8s %10s  %s\n' "restore --into wall time (s)" "$SR_T" "$GR_T" \
    "$(ratio "$SR_T" "$GR_T")" "<= $T_RESTORE_TIME" "$(verdict "$(ratio "$SR_T" "$GR_T")" "$T_RESTORE_TIME")"
printf '%-34s %12s %12s %8s %10s  %s\n' "restore vs floor (s)" "$SR_T" "$PR_T" \
    "$(ratio "$SR_T" "$PR_T")" "-" ""
echo
echo "restores, the server's side (log_statement_stats: the CPU of the load's backend; medians):"
busy() { # CPU WALL: "CPU s of WALL s wall, PCT% busy; WALL - CPU s not"
    awk -v c="$1" -v w="$2" 'BEGIN { printf "%6.2f s of %6.2f s wall, %5.1f%% busy; %5.2f s not", c, w, 100 * c / w, w - c }'
}
printf '  %-20s %s\n' "sum-restore --into" "$(busy "$(median "${sr_c[@]}")" "$SR_T")"
printf '  %-20s %s\n' "gunzip -c | psql" "$(busy "$(median "${gr_c[@]}")" "$GR_T")"
printf '  %-20s %s\n' "psql -f (floor)" "$(busy "$(median "${pr_c[@]}")" "$PR_T")"
echo "  (the backend's CPU excludes the parallel workers of CREATE INDEX; 'not' is"
echo "   connecting, the client's own work before and after, and those workers)"
echo
echo "floor for backups: pg_dump --format=plain --no-owner --no-acl -f file"
echo "baseline for backups: pg_dump --format=plain --no-owner --no-acl | gzip -6 > file (%M: largest of pg_dump and gzip)"
echo "baseline for restores: gunzip -c FILE | psql -X --single-transaction -v ON_ERROR_STOP=1 -q, same FILE (sum-backup's)"
echo "floor for restores: psql -X --single-transaction -v ON_ERROR_STOP=1 -q -f FILE.sql, FILE decompressed beforehand"
echo "RSS flat: the large database's %M at most max(10%, 4 MiB) above the small one's"
echo
echo "reference and context (not targets):"
printf '  %-40s %8ss %10s MiB  (%s of gzip -6 pipeline size)\n' "pg_dump -Fc" "$FC_T" "$(mib "$FC_S")" "$(ratio "$FC_S" "$BL_S")"
printf '  %-40s %8ss %10s MiB\n' "pg_dump to a plain file (median)" "$FL_T" "$(mib "$plain_s")"
for lvl in 1 3 6; do
    printf '  %-40s %8ss %10s MiB  (ratio %s, %s MB/s, size %s of -6)\n' "gzip -$lvl of that file (once)" "${gz_t[$lvl]}" \
        "$(mib "${gz_s[$lvl]}")" "$(ratio "$plain_s" "${gz_s[$lvl]}")" \
        "$(awk -v b="$plain_s" -v t="${gz_t[$lvl]}" 'BEGIN { printf "%.0f", b / 1e6 / t }')" "$(ratio "${gz_s[$lvl]}" "${gz_s[6]}")"
done
printf '  %-40s %8ss\n' "gunzip -c of sum-backup's file (once)" "$gunzip_t"
exit 0
