#!/usr/bin/env bash
# The example alerting rules (examples/prometheus/sum.rules.yml), checked and
# unit-tested with the real promtool, and metrics files linted with it:
#
#   bash tests/promtool.sh                  check the rules, run their tests
#                                           (examples/prometheus/sum.rules.test.yml)
#   bash tests/promtool.sh --metrics FILE...
#                                           promtool check metrics on each
#                                           FILE: any output fails
#   bash tests/promtool.sh --install        only make promtool available and
#                                           print its path (the last line)
#
# promtool is the one on PATH, or else the one of Debian's prometheus
# package, unpacked into target/promtool (apt-get download, dpkg-deb -x;
# apt-get update -q first only when the download fails): the package is not
# installed, so no prometheus daemon is started. A second run reuses it.
set -euo pipefail
cd "$(dirname "$0")/.."
rules=examples/prometheus/sum.rules.yml
tests=examples/prometheus/sum.rules.test.yml
dir=target/promtool

# Sets $promtool; progress goes to stderr.
install_promtool() {
    if promtool=$(command -v promtool); then
        return
    fi
    promtool=$dir/usr/bin/promtool
    if [ -x "$promtool" ]; then
        return
    fi
    mkdir -p "$dir"
    rm -f "$dir"/prometheus_*.deb
    echo "==> promtool: apt-get download prometheus into $dir" >&2
    if ! (cd "$dir" && apt-get download -q prometheus) >&2; then
        echo "==> promtool: download failed; apt-get update -q, then again" >&2
        apt-get update -q >&2
        (cd "$dir" && apt-get download -q prometheus) >&2
    fi
    local deb
    deb=$(ls "$dir"/prometheus_*.deb)
    dpkg-deb -x "$deb" "$dir"
    rm -f "$deb"
    [ -x "$promtool" ] || { echo "promtool: $promtool is not in $deb" >&2; exit 1; }
}

case "${1:-}" in
--install)
    [ $# -eq 1 ] || { echo "usage: $0 --install" >&2; exit 2; }
    install_promtool
    "$promtool" --version 2>&1 | head -n1 >&2
    realpath "$promtool"
    ;;
--metrics)
    shift
    [ $# -ge 1 ] || { echo "usage: $0 --metrics FILE..." >&2; exit 2; }
    install_promtool
    failed=0
    for f in "$@"; do
        [ -f "$f" ] || { printf 'FAIL  %s: no such file\n' "$f"; failed=1; continue; }
        # promtool exits non-zero on some lint problems and only prints
        # others: any output is a failure.
        out=$("$promtool" check metrics <"$f" 2>&1) && rc=0 || rc=$?
        if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
            printf 'FAIL  %s (promtool check metrics, exit %s):\n' "$f" "$rc"
            printf '%s\n' "$out" | sed 's/^/      /'
            failed=1
        else
            printf 'ok    %s\n' "$f"
        fi
    done
    exit "$failed"
    ;;
"")
    install_promtool
    echo "==> $("$promtool" --version 2>&1 | head -n1)"
    echo "==> promtool check rules $rules"
    "$promtool" check rules "$rules"
    echo "==> promtool test rules $tests"
    "$promtool" test rules "$tests"
    ;;
*)
    echo "usage: $0 [--install | --metrics FILE...]" >&2
    exit 2
    ;;
esac
