#!/usr/bin/env bash
# The demo: builds the package, boots a throwaway Debian 12 container with
# systemd as PID 1, installs the package there, creates the `acme` site and
# shows what the operator gets. The container is kept for you to look around;
# the last lines say how to enter it and how to remove it.
#
#   sudo bash examples/demo.sh
#
# Needs root on a Debian/Ubuntu machine with Rust (rustup); installs mmdebstrap,
# systemd-container and cargo-deb when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (systemd-nspawn needs it)" >&2; exit 2; }
command -v cargo >/dev/null || { echo "demo: install Rust first (https://rustup.rs)" >&2; exit 2; }

E2E_KEEP=1
e2e_install_traps
show() { # show COMMAND: runs it inside the container, echoing it first
    printf '\n# %s\n' "$1"
    ct "$1" || true
}

step "host tools"
e2e_host_deps
step "building the package"
deb=$(realpath "$(bash packaging/build-deb | tail -n 1)")
info "$deb"
step "image (built once, then cached)"
image=$(e2e_image)
step "booting the container"
e2e_boot "$image"
cp "$deb" "$E2E_STAGE/sum-golden-path.deb"

step "apt install ./sum-golden-path_*.deb"
ct "DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/in/sum-golden-path.deb >/dev/null"

step "sumctl new acme, a database for it, then systemctl daemon-reload"
ct 'sumctl new acme --domain acme.localhost --alias www.acme.localhost --git https://git.example.com/acme.git
    runuser -u postgres -- psql -q -c "CREATE ROLE acme LOGIN PASSWORD '\''demo-pw'\''"
    runuser -u postgres -- createdb -O acme acme
    sed -i "s|^DATABASE_URL=.*|DATABASE_URL=postgres://acme:demo-pw@127.0.0.1:5432/acme|" /srv/sum/acme/.env
    psql -q postgres://acme:demo-pw@127.0.0.1:5432/acme -c "CREATE TABLE notes (id serial PRIMARY KEY, title text); INSERT INTO notes (title) VALUES ('\''hello'\'')"
    systemctl daemon-reload && systemctl reload caddy'
show "sumctl check"
show "systemctl list-units --no-pager 'sum-*'"
show "systemctl list-timers --no-pager 'sum-backup@*'"
show "systemctl cat sum-gunicorn@acme.socket"
show "curl -sS -i --cacert /var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt --resolve acme.localhost:443:127.0.0.1 https://acme.localhost/"

step "a verified backup, as the timer would take it"
show "systemctl start sum-backup@acme && sum-backup acme --list"
show "journalctl --no-pager -o cat SUM_SITE=acme"

cat <<'MSG'

The site is generated and served by Caddy over HTTPS (503 until a release is
deployed; deploys come with sum-deploy). Inside the container, try:
  sumctl render acme            systemctl cat caddy          man sum-site.toml
  sum-restore acme latest --i-know-this-will-overwrite --into rehearsal
    (after: runuser -u postgres -- createdb -O acme rehearsal)
MSG
