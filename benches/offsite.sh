#!/usr/bin/env bash
# Benchmark of sum-backup's off-host copy against a bare `rclone copy` of the
# same files, to the same remote, in the same run (interleaved, median of
# the runs):
#
#   bash benches/offsite.sh                       # 1 GB dump, 10,000 media files
#   BENCH_DUMP_MB=100 BENCH_RUNS=3 bash benches/offsite.sh   # quicker
#
#   dump   `sum-backup SITE --offsite-only` copying one verified 1 GB backup
#          (its dump and manifest) to an empty target, checking it (the
#          hash rclone compared in the transfer, else `rclone check`) and
#          recording it, vs  `rclone copy DUMP MANIFEST` to an empty
#          directory. The check used is printed beside the figures.
#   media  the nightly mirror of a media directory of 10,000 files of 16 KB
#          where 1% (100 files) changed since the last run:
#          `sum-backup SITE --offsite-only` (the dump already off-host, so
#          this is the listing, the mirror with its --backup-dir, the
#          count of what was moved aside and the remote's retention),
#          vs  `rclone copy MEDIA` of the same changes to a
#          second mirror.
#
# BENCH_REMOTE chooses the storage (both by default, one after the other):
#   local  rclone's `local` backend on this machine's disk. The worst case
#          for the ratios: the transfer, which dominates over a network,
#          costs little, and `rclone check` hashes the "remote" file by
#          reading it again.
#   s3     a real S3-protocol server on 127.0.0.1 (s3s-fs, built once by
#          tests/s3s-fs.sh), where the check compares the hash the server
#          keeps with the object, as with a provider's storage.
# It prints the ratios against the target (at most 1.2x) and exits 0
# whether they are met or not; non-zero only if something broke.
set -euo pipefail

if [ -z "${BENCH_REMOTE:-}" ]; then
    for r in local s3; do BENCH_REMOTE=$r bash "$0"; done
    exit 0
fi

runs=${BENCH_RUNS:-5}
dump_mb=${BENCH_DUMP_MB:-1024}
media_files=${BENCH_MEDIA_FILES:-10000}
changed=$((media_files / 100))
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v rclone >/dev/null || { echo "offsite.sh: rclone is missing (apt install rclone)" >&2; exit 2; }
cargo build --release --quiet --manifest-path "$here/Cargo.toml" --bin sum-backup
bin="${CARGO_TARGET_DIR:-$here/target}/release/sum-backup"

work=$(mktemp -d /var/tmp/sum-offsite-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
case $BENCH_REMOTE in
local)
    store=$work/store   # where the target's files are
    target=store:$store # the same, as rclone names it
    conf='[store]\ntype = local\n'
    ;;
s3)
    # rclone 1.60's S3 backend refuses to start when AWS_CA_BUNDLE is set
    # ("LoadCustomCABundleError"), as some shells have it; the server here
    # is plain HTTP.
    unset AWS_CA_BUNDLE
    s3s=$(bash "$here/tests/s3s-fs.sh")
    port=$((20000 + RANDOM % 20000))
    mkdir -p "$work/s3/bench"
    "$s3s" --host 127.0.0.1 --port "$port" --access-key benchkey \
        --secret-key benchsecret0123456789 "$work/s3" >/dev/null 2>&1 &
    s3pid=$!
    trap 'kill "$s3pid" 2>/dev/null; rm -rf "$work"' EXIT
    store=$work/s3/bench
    target=store:bench
    conf="[store]\ntype = s3\nprovider = Other\naccess_key_id = benchkey\n"
    conf+="secret_access_key = benchsecret0123456789\nendpoint = http://127.0.0.1:$port\n"
    conf+="force_path_style = true\nregion = us-east-1\n"
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.2
    done
    ;;
*) echo "offsite.sh: BENCH_REMOTE is local or s3" >&2; exit 2 ;;
esac
root=$work/root
export SUM_ROOT=$root
home=$root/srv/sum/acme
mkdir -p "$root/etc/sum/sites" "$home/backups" "$home/state" "$store"
chmod 700 "$home/backups"
cat >"$root/etc/sum/sites/acme.toml" <<EOF
domain = "acme.example.com"
[git]
url = "https://example.com/acme.git"
[backup]
offsite = "$target/ours"
EOF
printf "$conf" >"$root/etc/sum/rclone.conf"
chmod 600 "$root/etc/sum/rclone.conf"
# The bare copy gets the options sum-backup gives rclone (timeouts and
# retries; src/backup/rclone.rs), so both meet a server's errors alike:
# s3s-fs answers a HEAD of a key that is a directory with a 500 where S3
# says 404, and rclone's default 10 low-level retries of it, with backoff,
# cost about 40 s per run.
rc() {
    rclone --config "$root/etc/sum/rclone.conf" --contimeout 15s --timeout 60s \
        --retries 2 --low-level-retries 3 "$@"
}

# One verified backup: a dump of incompressible bytes and its manifest.
name=acme-20261201T020000Z.sql.gz
echo "writing a ${dump_mb} MB dump and ${media_files} media files under $work" >&2
head -c "$((dump_mb * 1024 * 1024))" /dev/urandom >"$home/backups/$name"
size=$(stat -c %s "$home/backups/$name")
sha=$(sha256sum "$home/backups/$name" | cut -d' ' -f1)
cat >"$home/backups/$name.json" <<EOF
{"site":"acme","file":"$name","size":$size,"sha256":"$sha","uncompressed_size":$size,
 "database":"acme","server_version":"15","client_version":"15",
 "started_utc":"2026-12-01T02:00:00Z","finished_utc":"2026-12-01T02:01:00Z",
 "release":null,"verified":true}
EOF

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ours=() bare=()

# dump: an empty target each time, for both.
for i in $(seq 1 "$runs"); do
    rm -rf "$store/ours" "$store/bare" "$home/state/offsite.json"
    # Which goes first alternates: the second write of 1 GB finds the
    # first one's dirty pages still being flushed.
    ours_run() {
        sync; t0=$(now); "$bin" acme --offsite-only >/dev/null; t1=$(now)
    }
    bare_run() {
        sync; t2=$(now); rc copy --no-traverse "$home/backups/$name" "$target/bare"
        rc copy --no-traverse "$home/backups/$name.json" "$target/bare"; t3=$(now)
    }
    if [ $((i % 2)) = 1 ]; then ours_run; bare_run; else bare_run; ours_run; fi
    check=$(sed -n 's/.*"check": "\(.*\)".*/\1/p' "$home/state/offsite.json")
    ours+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
    bare+=("$(awk -v a="$t2" -v b="$t3" 'BEGIN { print b - a }')")
done
dump_ours=$(printf '%s\n' "${ours[@]}" | median)
dump_bare=$(printf '%s\n' "${bare[@]}" | median)

# media: both mirrors seeded, then 1% changed before each pair of runs.
rm -f "$home/backups/$name" "$home/backups/$name.json"
mkdir -p "$home/media"
for d in $(seq 0 99); do mkdir -p "$home/media/d$d"; done
for f in $(seq 0 $((media_files - 1))); do
    head -c 16384 /dev/urandom >"$home/media/d$((f % 100))/f$f.bin"
done
# The dump off-host already (a tiny one), so runs measure the media.
printf 'x' | gzip >"$home/backups/$name"
size=$(stat -c %s "$home/backups/$name")
cat >"$home/backups/$name.json" <<EOF
{"site":"acme","file":"$name","size":$size,"sha256":"x","uncompressed_size":1,
 "database":"acme","server_version":"15","client_version":"15",
 "started_utc":"2026-12-01T02:00:00Z","finished_utc":"2026-12-01T02:01:00Z",
 "release":null,"verified":true}
EOF
rm -rf "$store/ours" "$home/state/offsite.json"
"$bin" acme --offsite-only >/dev/null
rc copy "$home/media" "$target/bare-media"
ours=() bare=()
for i in $(seq 1 "$runs"); do
    for c in $(seq 1 "$changed"); do
        f=$(( (i * 7919 + c * 104729) % media_files ))
        head -c 16384 /dev/urandom >"$home/media/d$((f % 100))/f$f.bin"
    done
    ours_run() { t0=$(now); "$bin" acme --offsite-only >/dev/null; t1=$(now); }
    bare_run() { t2=$(now); rc copy "$home/media" "$target/bare-media"; t3=$(now); }
    if [ $((i % 2)) = 1 ]; then ours_run; bare_run; else bare_run; ours_run; fi
    ours+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
    bare+=("$(awk -v a="$t2" -v b="$t3" 'BEGIN { print b - a }')")
done
media_ours=$(printf '%s\n' "${ours[@]}" | median)
media_bare=$(printf '%s\n' "${bare[@]}" | median)

verdict() { awk -v r="$1" 'BEGIN { print (r <= 1.2 ? "PASS" : "MISS") }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
r1=$(ratio "$dump_ours" "$dump_bare")
r2=$(ratio "$media_ours" "$media_bare")
printf '\n%-44s %10s %10s %7s  %s\n' "off-host copy to $BENCH_REMOTE ($runs runs, median)" "ours (s)" "bare (s)" "ratio" "target <= 1.2x"
printf '%-44s %10.2f %10.2f %7s  %s\n' "dump of ${dump_mb} MB, to an empty target ($check)" "$dump_ours" "$dump_bare" "${r1}x" "$(verdict "$r1")"
printf '%-44s %10.2f %10.2f %7s  %s\n' "${media_files} media files, ${changed} changed" "$media_ours" "$media_bare" "${r2}x" "$(verdict "$r2")"
