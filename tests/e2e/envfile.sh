# shellcheck shell=bash
# The .env corpus read by systemd itself (part of tests/e2e/run.sh).
#
# tests/fixtures/envfile-corpus/<case>.env holds a .env and <case>.expected
# what sum::envfile::parse makes of it (tests/it/envfile_corpus.rs keeps the two
# in step). For every case our parser accepts, a transient service with
# EnvironmentFile=<case>.env must get exactly those variables: the deploy and
# the backup read what gunicorn and celery get. A refused case has nothing to
# compare: we never act on such a file.
#
# Needs lib.sh (e2e_check, E2E_STAGE) and a booted container, not the
# package. Sourced by run.sh, which calls e2e_envfile_checks.

# e2e_envfile_checks: copies the accepted cases to the stage and compares.
e2e_envfile_checks() {
    local corpus=tests/fixtures/envfile-corpus stage=$E2E_STAGE/envfile-corpus
    local expected id script n=0
    rm -rf "$stage"
    mkdir -p "$stage"
    for expected in "$corpus"/*.expected; do
        id=$(basename "$expected" .expected)
        # Our verdict is either the variables or one "refused: ..." line.
        grep -q '^refused: ' "$expected" && continue
        cp "$corpus/$id.env" "$expected" "$stage/"
        n=$((n + 1))
    done
    [ "$n" -gt 0 ] || e2e_fail "the .env corpus" "accepted cases in $corpus" "none"
    # Runs in the container, after lib.sh's prelude and `set -e`.
    script=$(cat <<'EOF'
export LC_ALL=C
cd /root/in/envfile-corpus || exit 1
# The variables systemd-run hands a service with this EnvironmentFile=,
# NUL-separated.
service_env() {
    systemd-run --wait --pipe --quiet --collect -p "EnvironmentFile=$1" /usr/bin/env -0
}
# What systemd sets by itself: a service with an empty file.
: >/run/envfile-empty.env
declare -A own=()
while IFS= read -r -d "" kv; do own[${kv%%=*}]=1; done < <(service_env /run/envfile-empty.env)
[ -n "${own[PATH]:-}" ] || { echo "expected: PATH among the variables of a service; seen: ${!own[*]}"; exit 1; }
# One NAME=value line per variable not in own[], escaped as
# tests/it/envfile_corpus.rs escapes them, sorted.
render() {
    local kv name value
    while IFS= read -r -d "" kv; do
        name=${kv%%=*}
        [ -z "${own[$name]:-}" ] || continue
        value=${kv#*=}
        value=${value//\\/\\\\}
        value=${value//$'\n'/\\n}
        value=${value//$'\t'/\\t}
        value=${value//$'\r'/\\r}
        printf "%s=%s\n" "$name" "$value"
    done | sort
}
failed=0
for f in *.env; do
    id=${f%.env}
    while IFS= read -r line; do
        if [ -n "$line" ] && [ -n "${own[${line%%=*}]:-}" ]; then
            echo "$id: expected variable ${line%%=*} is one systemd sets itself: rename it in the corpus"
            failed=1
        fi
    done <"$id.expected"
    if ! service_env "$PWD/$f" >/root/envfile.out 2>/root/envfile.err; then
        echo "$id: expected the service to run; systemd-run failed: $(cat /root/envfile.err)"
        failed=1
        continue
    fi
    render </root/envfile.out >/root/envfile.seen
    if ! cmp -s "$id.expected" /root/envfile.seen; then
        echo "$id: expected (envfile::parse) vs seen (systemd $(systemctl --version | sed -n "1s/^systemd \([0-9]*\).*/\1/p")):"
        diff "$id.expected" /root/envfile.seen | sed "s/^/    /" || true
        failed=1
    fi
done
exit "$failed"
EOF
)
    e2e_check "systemd's EnvironmentFile= reads the $n .env cases envfile::parse accepts as it does" \
        "$script"
}
