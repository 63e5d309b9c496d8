#!/usr/bin/env bash
# The demo: builds the package and a signed apt repository of it, boots a
# throwaway Debian 13 container (E2E_SUITE=bookworm: Debian 12) with systemd
# as PID 1, installs the package there with apt install, creates the `acme` site,
# deploys the example Django app with `systemctl start sum-deploy@acme`,
# shows a failing deploy rolling back, and a verified backup. The container is kept for you to look around;
# the last lines say how to enter it and how to remove it.
#
#   sudo bash examples/demo.sh
#
# Needs root on a Debian 12 machine with Rust (rustup); installs mmdebstrap,
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
step "the example app: a git repository with eight versions, and its wheels"
wheelhouse=$(bash tests/wheelhouse.sh)
step "image (built once, then cached)"
image=$(e2e_image)
step "booting the container"
e2e_boot "$image"
# The package as users get it: a signed apt repository (a throwaway key).
e2e_build_repo "$deb"
# The container has no network: pip installs from this wheelhouse (the .env
# says so with PIP_NO_INDEX and PIP_FIND_LINKS, as a private index would).
cp -r "$wheelhouse" "$E2E_STAGE/wheels"
bash examples/make-repo.sh "$E2E_STAGE/acme-repo" >/dev/null

step "apt install sum-golden-path: the repository's key and source, as docs/packaging.md shows"
show "$E2E_REPO_SETUP
cat /etc/apt/sources.list.d/sum-golden-path.sources"
# The container has no network: Debian's own sources stay out of the update.
ct "apt-get update -q -o Dir::Etc::SourceList=/dev/null >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dir::Etc::SourceList=/dev/null sum-golden-path >/dev/null"
show 'apt-cache policy sum-golden-path'

step "sumctl new acme: the site file, its own database and Redis, the .env"
new_acme="sumctl new acme --domain acme.localhost --alias www.acme.localhost --git /root/in/acme-repo"
printf '\n# %s\n' "$new_acme"
ct "$new_acme"
ct 'cp -r /root/in/wheels /srv/wheels && chmod -R a+rX /srv/wheels
    printf "PIP_NO_INDEX=1\nPIP_FIND_LINKS=/srv/wheels\n" >>/srv/sum/acme/.env
    # A failing health check gives up after 15 s instead of the default 60 s.
    sed -i "s|^# timeout = \"60s\"|timeout = \"15s\"|" /etc/sum/sites/acme.toml
    systemctl daemon-reload'
show "sumctl check"
show "systemctl list-units --no-pager 'sum-*'"
show "systemctl list-timers --no-pager 'sum-backup@*'"

step "systemctl start sum-deploy@acme (blocks until the deploy ends)"
show "systemctl start sum-deploy@acme; journalctl -u sum-deploy@acme --no-pager -o cat"
show "curl -sS --cacert /var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt --resolve acme.localhost:443:127.0.0.1 https://acme.localhost/health/"

step "a deploy that fails after the switch (v4 answers 503) rolls back by itself"
show "sum-deploy acme --ref v4 | tail -n 12; echo \"exit status: \${PIPESTATUS[0]}\""
show "curl -sS --cacert /var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt --resolve acme.localhost:443:127.0.0.1 https://acme.localhost/health/"
show "sumctl history acme"

step "a verified backup, as the timer would take it"
show "systemctl start sum-backup@acme && sum-backup acme --list"

cat <<'MSG'

https://acme.localhost/ is deployed (v2 of the example app) and served by
Caddy over HTTPS inside the container. Inside it, try:
  sumctl status acme            sumctl releases acme         sumctl rollback acme
  sum-deploy acme --ref v1      journalctl SUM_SITE=acme     man sum-deploy
  curl --cacert /var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt \
       --resolve acme.localhost:443:127.0.0.1 https://acme.localhost/static/notes/site.css
  sumctl manage acme check       sumctl run acme -- python manage.py shell
  sum-restore acme latest --into rehearsal
MSG
