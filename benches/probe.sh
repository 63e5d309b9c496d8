#!/usr/bin/env bash
# Benchmark of one health probe (`sumctl probe SITE`, what
# sum-probe@<site>.timer runs every minute) against the smallest probe a
# shell could run, in the same run (interleaved, median of the runs):
#
#   bash benches/probe.sh                  # 50 runs each
#   BENCH_RUNS=20 bash benches/probe.sh
#   BENCH_SUMCTL=path/to/sumctl bash benches/probe.sh   # no build
#
#   probe     `sumctl probe acme` in a SUM_ROOT layout: loads and validates
#             the site file, asks the health path over the site's unix
#             socket, judges the answer, reads the certificate store, writes
#             sum-acme-probe.prom atomically (fsynced) and its own count
#   baseline  `curl --unix-socket SOCK http://DOMAIN/health/` of the same
#             path, writing nothing
#
# Both ask the same server: a small HTTP server on the socket (python3),
# which answers `{"status": "ok"}` at once, so the figures are the probe's
# own cost. Wall time (by the clock) and peak RSS (GNU time %M) are printed with
# their ratios. The probe runs outside systemd here, so this is the
# process's cost; on a host, a run is also one short-lived unit, which
# systemd starts and logs nothing about (LogLevelMax=notice).
#
# It is a benchmark, not a test: it exits 0 whether the targets are met or
# not (and non-zero only if something broke). Targets: at most 3x the
# baseline's wall time and at most 20 MB peak RSS, at most once a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${BENCH_RUNS:-50}

for tool in curl python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "benches/probe.sh: $tool is missing" >&2; exit 2; }
done
# BENCH_SUMCTL: a sumctl already built (e.g. the package's), instead of
# building this checkout's.
if [ -n "${BENCH_SUMCTL:-}" ]; then
    sumctl=$(realpath "$BENCH_SUMCTL")
else
    cargo build --release --quiet --bin sumctl
    sumctl=$PWD/target/release/sumctl
fi

work=$(mktemp -d /var/tmp/sum-bench-probe.XXXXXX)
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/etc/sum/sites" "$work/run/sum/acme" "$work/var/lib/prometheus/node-exporter"
printf 'domain = "acme.example.com"\n[git]\nurl = "https://git.example.com/acme.git"\n' \
    >"$work/etc/sum/sites/acme.toml"
sock=$work/run/sum/acme/gunicorn.sock
python3 - "$sock" <<'PY' &
import socketserver, sys
BODY = b'{"status": "ok"}'
class Health(socketserver.StreamRequestHandler):
    def handle(self):
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(BODY), BODY))
class Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
Server(sys.argv[1], Health).serve_forever()
PY
server_pid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "benches/probe.sh: the server did not start" >&2; exit 1; }

probe=(env "SUM_ROOT=$work" "$sumctl" probe acme)
baseline=(curl -sS --max-time 10 --unix-socket "$sock" -o /dev/null http://acme.example.com/health/)
# One run: "milliseconds kilobytes" (wall time by the clock, peak RSS by
# GNU time; the same wrapper on both sides).
measure() {
    local t0 t1
    t0=$(date +%s%N)
    /usr/bin/time -f '%M' -o "$work/time" "$@" >/dev/null
    t1=$(date +%s%N)
    echo "$(( (t1 - t0) / 1000 )) $(cat "$work/time")" | awk '{ printf "%.1f %s\n", $1 / 1000, $2 }'
}
"${probe[@]}" >/dev/null || { echo "benches/probe.sh: sumctl probe failed" >&2; exit 1; }
grep -q 'sum_probe_up{site="acme",via="socket"} 1' "$work/var/lib/prometheus/node-exporter/sum-acme-probe.prom" \
    || { echo "benches/probe.sh: the probe did not see the site up" >&2; exit 1; }

: >"$work/probe.txt"
: >"$work/baseline.txt"
for _ in $(seq "$runs"); do
    measure "${probe[@]}" >>"$work/probe.txt"
    measure "${baseline[@]}" >>"$work/baseline.txt"
done

median() { # median COLUMN FILE
    sort -n -k "$1" "$2" | awk -v c="$1" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'
}
p_s=$(median 1 "$work/probe.txt") b_s=$(median 1 "$work/baseline.txt")
p_kb=$(median 2 "$work/probe.txt") b_kb=$(median 2 "$work/baseline.txt")
verdict() { awk -v ok="$1" 'BEGIN { print (ok ? "PASS" : "MISS") }'; }
ratio=$(awk -v a="$p_s" -v b="$b_s" 'BEGIN { printf "%.2f", a / b }')
echo "health probe, $runs runs each, medians"
printf '  %-40s %8s ms %8s KB\n' "sumctl probe acme" "$p_s" "$p_kb"
printf '  %-40s %8s ms %8s KB\n' "curl --unix-socket (baseline)" "$b_s" "$b_kb"
printf '  wall time: %sx the baseline (target <= 3x): %s\n' "$ratio" \
    "$(verdict "$(awk -v r="$ratio" 'BEGIN { print (r <= 3) }')")"
printf '  peak RSS: %s KB (target <= 20480 KB): %s\n' "$p_kb" \
    "$(verdict "$(awk -v k="$p_kb" 'BEGIN { print (k <= 20480) }')")"
