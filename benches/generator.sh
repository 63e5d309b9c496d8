#!/usr/bin/env bash
# Benchmark of sum-generator: how long a `systemctl daemon-reload` waits for us.
#
#   bash benches/generator.sh
#
# For 1, 50 and 500 valid sites it runs the release binary several times, each
# time into a fresh, empty output directory (as systemd does), and reports the
# median wall time next to a baseline measured in the same run: producing the
# same output tree (same directories, same files with the same bytes, same
# symbolic links) with `cp -a`. The targets printed next to the 500-site row
# are < 100 ms and < 3x the baseline. It is a benchmark, not a test: it exits 0
# whether the targets are met or not (and non-zero only if something broke).
#
# Environment:
#   BENCH_TMPDIR  where the site trees and outputs live. Default: /dev/shm when
#                 it is a writable tmpfs, else $TMPDIR or /tmp. systemd runs
#                 generators into /run/systemd/generator/, a tmpfs, so a tmpfs
#                 is what matters; on a disk file system the generator's fsyncs
#                 (which the baseline does not do) would dominate both numbers.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SIZES=(1 50 500)
declare -A RUNS=([1]=20 [50]=20 [500]=10)
TARGET_MS=100
TARGET_RATIO=3

echo "building: cargo build --release --bin sum-generator" >&2
cargo build --quiet --release --bin sum-generator
GEN="$PWD/target/release/sum-generator"

if [[ -n "${BENCH_TMPDIR:-}" ]]; then
    base_tmp="$BENCH_TMPDIR"
elif [[ -d /dev/shm && -w /dev/shm ]] && [[ "$(stat -f -c %T /dev/shm)" == tmpfs ]]; then
    base_tmp=/dev/shm
else
    base_tmp="${TMPDIR:-/tmp}"
fi
work="$(mktemp -d "$base_tmp/sum-generator-bench.XXXXXX")"
trap 'rm -rf -- "$work"' EXIT

# Peak RSS: GNU time's %M (the child's ru_maxrss, in KiB). Installed when
# missing and possible; otherwise the timing helper's getrusage() says the same.
if [[ ! -x /usr/bin/time ]] && command -v apt-get >/dev/null && [[ $EUID -eq 0 ]]; then
    echo "installing GNU time for the peak RSS column" >&2
    apt-get install -y -qq time >/dev/null 2>&1 || true
fi

# The timing helper: runs a command RUNS times, each into a fresh empty
# directory created before the clock starts, timed with CLOCK_MONOTONIC around
# fork+exec+wait, and prints "median_ns max_rss_kib". Any failing run aborts.
# (bash's $EPOCHREALTIME is wall-clock time, which NTP may step.)
timer="$work/timer.py"
cat >"$timer" <<'PY'
import os, resource, statistics, subprocess, sys, time

runs, scratch, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
samples = []
for i in range(runs):
    out = os.path.join(scratch, f"run{i}")
    os.mkdir(out)
    argv = [out if a == "{out}" else a for a in cmd]
    t0 = time.monotonic_ns()
    rc = subprocess.run(argv).returncode
    t1 = time.monotonic_ns()
    if rc != 0:
        sys.exit(f"{' '.join(argv)}: exit status {rc}")
    samples.append(t1 - t0)
# ru_maxrss of waited-for children, in KiB on Linux.
print(statistics.median(samples), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY

# One valid site file. The mix is what a real host looks like: every site has
# a domain, most an alias; every 4th runs a celery worker, every 8th also beat
# (so those sites get 1 or 2 more units and links); backup times are spread
# over the night; some set python extras, shared paths and other non-defaults.
write_site() {
    local i=$1 file=$2 name
    name=$(printf 's%04d' "$i")
    {
        printf 'domain  = "%s.example.com"\n' "$name"
        if ((i % 3 != 0)); then
            printf 'aliases = ["www.%s.example.com"]\n' "$name"
        fi
        printf '\n[git]\nurl = "https://git.example.com/%s.git"\nref = "main"\n' "$name"
        printf '\n[django]\nproject = "%s"\n' "$name"
        if ((i % 2 == 0)); then
            printf '\n[python]\nextra = ["psycopg[binary]", "django-redis>=5"]\n'
        fi
        printf '\n[gunicorn]\nworkers = %d\nthreads = 2\ntimeout = %d\n' $((2 + i % 7)) $((30 + i % 60))
        if ((i % 4 == 0)); then
            printf '\n[celery]\nworker = true\nconcurrency = %d\n' $((1 + i % 4))
            if ((i % 8 == 0)); then
                printf 'beat = true\n'
            fi
        fi
        printf '\n[health]\npath = "/health/"\ntimeout = "90s"\n'
        printf '\n[backup]\nschedule = "*-*-* %02d:%02d:00 UTC"\nkeep_daily = 7\n' $((1 + i % 5)) $((i % 60))
        if ((i % 5 == 0)); then
            printf 'ping_url = "https://hc.example.com/ping/%s"\n' "$name"
        fi
        if ((i % 6 == 0)); then
            printf '\n[deploy]\nshared = ["%s/uploads"]\n' "$name"
        fi
        if ((i % 10 == 0)); then
            printf '\n[sandbox]\nmemory_deny_write_execute = false\n'
        fi
    } >"$file"
}

have_gnu_time=false
if [[ -x /usr/bin/time ]] && /usr/bin/time -f %M true >/dev/null 2>&1; then
    have_gnu_time=true
fi

median_of() { # median of the numbers given as arguments
    printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2); print (NR % 2) ? v[m] : (v[m] + v[m + 1]) / 2 }'
}

rows=()
for n in "${SIZES[@]}"; do
    root="$work/root-$n"
    mkdir -p "$root/etc/sum/sites"
    for ((i = 1; i <= n; i++)); do
        write_site "$i" "$root/etc/sum/sites/$(printf 's%04d' "$i").toml"
    done
    runs=${RUNS[$n]}

    # Reference output: also the source tree of the baseline, and a check that
    # every site was valid (the generator exits 1 otherwise).
    ref="$work/ref-$n"
    mkdir "$ref"
    SUM_ROOT="$root" "$GEN" "$ref"
    files=$(find "$ref" -type f | wc -l)
    links=$(find "$ref" -type l | wc -l)
    bytes=$(find "$ref" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
    units=$(find "$ref" -maxdepth 1 -type f | wc -l)
    expected=$((3 * n + n / 4 + n / 8)) # socket, service, timer; celery; beat
    if ((units != expected)); then
        echo "N=$n: expected $expected units, the generator wrote $units" >&2
        exit 1
    fi

    # Generator: one process reading N site files and writing the tree.
    scratch="$work/gen-$n"
    mkdir "$scratch"
    result=$(SUM_ROOT="$root" python3 "$timer" "$runs" "$scratch" "$GEN" "{out}")
    read -r gen_ns gen_rss <<<"$result"
    rm -rf -- "$scratch"

    # Baseline: the same tree made by one `cp -a` process, into an existing
    # empty directory like the generator's. Chosen over a shell or Python
    # loop writing the bytes because those pay an interpreter's start-up and
    # per-file overhead that has nothing to do with the file system and would
    # flatter the ratio; `cp -a` is one small compiled process, like the
    # generator, creating the same directories, files and symbolic links. It
    # does a little more (reads the source tree, copies modes and times) and a
    # little less (no temporary names, renames or fsyncs, which the generator
    # does to never leave a half-written unit; on tmpfs these are cheap).
    scratch="$work/base-$n"
    mkdir "$scratch"
    result=$(python3 "$timer" "$runs" "$scratch" cp -a "$ref/." "{out}")
    read -r base_ns _ <<<"$result"
    rm -rf -- "$scratch"

    # Peak RSS with GNU time, taken as the median of a few runs.
    if $have_gnu_time; then
        samples=()
        for k in 1 2 3; do
            out="$work/rss-$n-$k"
            mkdir "$out"
            samples+=("$(SUM_ROOT="$root" /usr/bin/time -f %M "$GEN" "$out" 2>&1 >/dev/null | tail -n 1)")
            rm -rf -- "$out"
        done
        rss_kib=$(median_of "${samples[@]}")
    else
        rss_kib=$gen_rss
    fi

    rows+=("$n $runs $files $links $bytes $gen_ns $base_ns $rss_kib")
    rm -rf -- "$root" "$ref"
done

echo
echo "sum-generator benchmark: $(nproc) CPUs, output on $(stat -f -c %T "$work") ($work)"
echo "median of the runs; fresh empty output directory per run; monotonic clock"
if $have_gnu_time; then
    echo "peak RSS of the generator: GNU time %M, median of 3 runs"
else
    echo "peak RSS of the generator: getrusage(RUSAGE_CHILDREN), largest of the timed runs"
fi
echo
printf '%5s %5s %6s %6s %9s %10s %9s %10s %6s %9s  %s\n' \
    N runs files links bytes "gen ms" "us/site" "base ms" ratio "RSS KiB" targets
for row in "${rows[@]}"; do
    read -r n runs files links bytes gen_ns base_ns rss_kib <<<"$row"
    line=$(awk -v n="$n" -v g="$gen_ns" -v b="$base_ns" \
        'BEGIN { printf "%10.2f %9.1f %10.2f %6.2f", g / 1e6, g / 1e3 / n, b / 1e6, g / b }')
    targets=""
    if ((n == 500)); then
        targets=$(awk -v g="$gen_ns" -v b="$base_ns" -v tm="$TARGET_MS" -v tr="$TARGET_RATIO" 'BEGIN {
            printf "< %d ms: %s   < %dx baseline: %s", tm, (g / 1e6 < tm) ? "PASS" : "MISS",
                tr, (g / b < tr) ? "PASS" : "MISS" }')
    fi
    printf '%5s %5s %6s %6s %9s %s %9s  %s\n' "$n" "$runs" "$files" "$links" "$bytes" "$line" "$rss_kib" "$targets"
done
exit 0
