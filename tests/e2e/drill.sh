#!/usr/bin/env bash
# The disaster drill: losing the VPS must not lose the site.
#
# Host A (a systemd container) runs the bakery example with an upload (a
# gallery_image row and a media file), and its backup unit copies the
# verified backup and mirrors the media off-host. Host A is then destroyed.
# Host B, a fresh container, gets the site back with the package's own
# commands and the steps of the runbook (docs/backups.md, "The disaster
# drill"), from nothing but the off-host storage and what the operator keeps
# elsewhere (the site file, the .env, the rclone configuration and key),
# and must serve the same rows and the same media bytes through Caddy. The
# recovery time, from B's first command to the site serving, is printed.
#
# The storage outlives host A: a directory of this machine, bound
# read-write into each container in turn, served inside it by a real
# storage server on 127.0.0.1 (the containers have no other network):
#   sftp  OpenSSH's sshd, with a key made for the drill
#   s3    s3s-fs (tests/s3s-fs.sh builds it), an S3-protocol server
#         that keeps objects as files
# Host A copies to both (one backup run per remote, the site file's
# `offsite` changed in between); one host B per remote restores from it.
#
#   sudo bash tests/e2e/drill.sh --deb PATH [--keep] [--remote sftp|s3|both]
#
# It shares tests/e2e/lib.sh with tests/e2e/run.sh and faults.sh; its image
# also has rclone and openssh-server (E2E_EXTRA_PACKAGES).
set -euo pipefail

usage() { echo "usage: $0 --deb PATH [--keep] [--remote sftp|s3|both]" >&2; exit 2; }
deb="" keep=0 remotes="sftp s3"
while [ $# -gt 0 ]; do
    case "$1" in
    --deb) [ $# -ge 2 ] || usage; deb=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --remote)
        [ $# -ge 2 ] || usage
        case "$2" in sftp | s3) remotes=$2 ;; both) remotes="sftp s3" ;; *) usage ;; esac
        shift 2 ;;
    *) usage ;;
    esac
done
[ -n "$deb" ] && [ -f "$deb" ] || usage
deb=$(realpath "$deb")

cd "$(dirname "$0")/../.."
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh
# rclone and an SSH server (the SFTP remote), in the image the monitoring
# test and the runbook share.
E2E_EXTRA_PACKAGES=("${E2E_FULL_PACKAGES[@]}")
[ "$(id -u)" -eq 0 ] || { echo "e2e: run as root (systemd-nspawn needs it)" >&2; exit 2; }
check() { e2e_check "$@"; }

# Where the storage lives (bound at /srv/offsite-store in every container)
# and what the operator keeps off the server (the site file, the .env, the
# rclone configuration and the SFTP key: a password manager, say).
DRILL_DIR=$(mktemp -d "$E2E_TMP_BASE/sum-drill.XXXXXXXX")
STORE=$DRILL_DIR/store
VAULT=$DRILL_DIR/vault
mkdir -p "$STORE/sftp" "$STORE/s3" "$VAULT"
chmod 0700 "$DRILL_DIR"
E2E_BIND_RW="$STORE:/srv/offsite-store"

S3_PORT=8014
S3_KEY=drillaccesskey
S3_SECRET=drillsecretkey0123456789
SFTP_TARGET=drill-sftp:/srv/offsite-store/sftp/bakery-backups
S3_TARGET=drill-s3:bakery-backups/nightly

target_of() { # target_of REMOTE: the [backup] offsite value for sftp or s3
    case "$1" in sftp) echo "$SFTP_TARGET" ;; s3) echo "$S3_TARGET" ;; esac
}

stored_at() { # stored_at REMOTE: where the target's files are in the storage directory
    case "$1" in
    sftp) echo /srv/offsite-store/sftp/bakery-backups ;;
    s3) echo /srv/offsite-store/s3/bakery-backups/nightly ;;
    esac
}

RESULTS=()

# The storage directory and the vault go with the run (after the last
# container), unless --keep.
drill_on_exit() {
    local rc=$?
    exec 1>&"$E2E_STDOUT" 2>&"$E2E_STDERR"
    if [ "$keep" != 1 ] && [ -n "$DRILL_DIR" ] && [ -d "$DRILL_DIR" ]; then
        e2e_cleanup
        rm -rf --one-file-system "$DRILL_DIR"
    fi
    if [ ${#RESULTS[@]} -gt 0 ]; then
        step "recovery times (host B's first command to the site serving through Caddy)"
        printf '    %s\n' "${RESULTS[@]}"
    fi
    (exit "$rc")
    e2e_on_exit
}
e2e_install_traps
E2E_KEEP=$keep
trap drill_on_exit EXIT

# Destroys the current container and everything of it on this machine, so
# that the next e2e_boot starts a new host from the image.
destroy_host() {
    E2E_KEEP=0
    e2e_cleanup
    E2E_CLEANED=0 E2E_BOOTED=0 E2E_NSPAWN_PID="" E2E_LEADER=""
    E2E_DIR="" E2E_ROOT="" E2E_STAGE="" E2E_LOG="" E2E_MACHINE=""
    E2E_CGROUPS=()
    E2E_KEEP=$keep
}

E2E_PRELUDE+='
CA=/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt
get() { # get URL [curl args]: prints the HTTP status; body in /root/resp.b
    curl -sS --max-time 20 --cacert "$CA" --resolve bakery.localhost:443:127.0.0.1 \
        -o /root/resp.b -w "%{http_code}" "$@"
}
env_of() { # env_of KEY: a value from the bakery .env
    sed -n "s/^$1=//p" /srv/sum/bakery/.env
}
rows() { # rows: the gallery_image rows, as the site own role reads them
    psql "$(env_of DATABASE_URL)" -At -c "SELECT id, title, file FROM gallery_image ORDER BY id"
}
rcl() { # rclone with the package configuration
    rclone --config /etc/sum/rclone.conf "$@"
}
set_offsite() { # set_offsite TARGET: the bakery site file copies to TARGET
    if grep -q "^offsite" /etc/sum/sites/bakery.toml; then
        sed -i "s|^offsite = .*|offsite = \"$1\"|" /etc/sum/sites/bakery.toml
    else
        sed -i "/^\[backup\]/a offsite = \"$1\"" /etc/sum/sites/bakery.toml
    fi
    grep -qx "offsite = \"$1\"" /etc/sum/sites/bakery.toml
    sumctl check /etc/sum/sites/bakery.toml >/dev/null
}
backup_fails() { # backup_fails: the backup unit fails; its journal in $j
    since=$(date +%s.%6N)
    sleep 1
    if systemctl start sum-backup@bakery 2>/dev/null; then
        echo "sum-backup@bakery succeeded, expected it to fail"; return 1
    fi
    expect "sum-backup@bakery Result" exit-code "$(systemctl show -P Result sum-backup@bakery)"
    j=$(journalctl -u sum-backup@bakery --since @$since --no-pager -o cat)
}
backup_works() { # backup_works: the backup unit succeeds; its journal in $j
    since=$(date +%s.%6N)
    sleep 1
    systemctl start sum-backup@bakery
    expect "sum-backup@bakery Result" success "$(systemctl show -P Result sum-backup@bakery)"
    j=$(journalctl -u sum-backup@bakery --since @$since --no-pager -o cat)
}
'

# The storage servers inside the current container: sshd (in the image)
# with the drill's public key, and s3s-fs on 127.0.0.1:$S3_PORT. They stand
# for storage elsewhere; starting them is not part of any recovery.
storage_up() {
    check "the storage servers answer on 127.0.0.1 (sshd; s3s-fs)" "
        install -d -m 0700 /root/.ssh
        install -m 0600 /root/in/storage-authorized-keys /root/.ssh/authorized_keys
        systemctl is-active -q ssh || systemctl start ssh
        poll 20 ss -Htln 'sport = :22'
        [ -e /root/in/s3s-fs ] || exit 0
        install -m 0755 /root/in/s3s-fs /usr/local/bin/s3s-fs
        systemd-run --quiet --unit=drill-s3 /usr/local/bin/s3s-fs \
            --host 127.0.0.1 --port $S3_PORT \
            --access-key $S3_KEY --secret-key $S3_SECRET /srv/offsite-store/s3
        poll 20 ss -Htln 'sport = :$S3_PORT'"
}

# The rclone configuration the operator writes (docs/backups.md): both
# remotes, the SFTP key outside /root (sum-backup@.service: ProtectHome=yes).
rclone_conf() {
    cat <<EOF
[drill-sftp]
type = sftp
host = 127.0.0.1
user = root
key_file = /etc/sum/rclone-sftp.key

[drill-s3]
type = s3
provider = Other
access_key_id = $S3_KEY
secret_access_key = $S3_SECRET
endpoint = http://127.0.0.1:$S3_PORT
force_path_style = true
region = us-east-1
EOF
}

step "host tools"
e2e_host_deps
command -v ssh-keygen >/dev/null || { echo "e2e: ssh-keygen (openssh-client) is missing on this machine" >&2; exit 2; }
step "image (with rclone and openssh-server)"
image=$(e2e_image)
s3s_fs=""
case " $remotes " in
*" s3 "*)
    step "s3s-fs (the S3 storage server)"
    s3s_fs=$(bash tests/s3s-fs.sh)
    info "$s3s_fs" ;;
esac
wheelhouse=$(bash tests/wheelhouse.sh)

# The drill's SSH key: the operator's, kept in the vault.
ssh-keygen -q -t ed25519 -N "" -C sum-drill -f "$VAULT/rclone-sftp.key"
rclone_conf >"$VAULT/rclone.conf"
chmod 0600 "$VAULT/rclone.conf" "$VAULT/rclone-sftp.key"

# stage_common: what every host gets in /root/in: the package, the storage
# server's binary and key, the wheelhouse (the site's private package
# index) and the bakery's git repository (its git server).
stage_common() {
    cp "$deb" "$E2E_STAGE/"
    [ -z "$s3s_fs" ] || cp "$s3s_fs" "$E2E_STAGE/s3s-fs"
    cp "$VAULT/rclone-sftp.key.pub" "$E2E_STAGE/storage-authorized-keys"
    cp -r "$wheelhouse" "$E2E_STAGE/wheels"
    bash examples/make-bakery-repo.sh "$E2E_STAGE/bakery-repo" >/dev/null
}
debname=$(basename "$deb")

# ---------------------------------------------------------------------------
# Host A
# ---------------------------------------------------------------------------

step "host A: the bakery with an upload, backed up off-host"
E2E_UNITS=($E2E_PG_UNIT caddy.service ssh.service drill-s3.service)
e2e_boot "$image"
stage_common
cp examples/bakery.toml "$E2E_STAGE/bakery.toml"
cp "$VAULT/rclone.conf" "$VAULT/rclone-sftp.key" "$E2E_STAGE/"
storage_up

E2E_UNITS=(sum-deploy@bakery.service sum-gunicorn@bakery.service caddy.service)
check "A: the package installs, sumctl new bakery, the deploy serves it" "
    apt-get install -y -q -o Dpkg::Use-Pty=0 /root/in/$debname >/dev/null
"'
    rm -rf /srv/wheels && cp -r /root/in/wheels /srv/wheels && chmod -R a+rX /srv/wheels
    sumctl new bakery --domain bakery.localhost --git /root/in/bakery-repo >/dev/null
    sed -e "s|^domain = .*|domain = \"bakery.localhost\"|" \
        -e "s|^url = .*|url = \"/root/in/bakery-repo\"|" \
        -e "/^\[health\]/,/^\[/ s|^timeout = .*|timeout = \"20s\"|" /root/in/bakery.toml >/etc/sum/sites/bakery.toml
    sed -n "s/^SECRET_KEY=/DJANGO_SECRET_KEY=/p" /srv/sum/bakery/.env >>/srv/sum/bakery/.env
    printf "DJANGO_ALLOWED_HOSTS=bakery.localhost\nPIP_NO_INDEX=1\nPIP_FIND_LINKS=/srv/wheels\n" >>/srv/sum/bakery/.env
    sumctl check /etc/sum/sites/bakery.toml
    systemctl daemon-reload
    systemctl start sum-deploy@bakery
    expect "sum-deploy@bakery Result" success "$(systemctl show -P Result sum-deploy@bakery)"
    expect "https://bakery.localhost/" 200 "$(get https://bakery.localhost/)"'
check "A: an upload through Caddy makes a gallery_image row and a media file" '
    head -c 3000 /dev/urandom | base64 >/root/cake.txt
    expect "POST /upload/" 201 "$(get https://bakery.localhost/upload/ -F file=@/root/cake.txt -F title=drill-cake)"
    url=$(python3 -c "import json; print(json.load(open(\"/root/resp.b\"))[\"url\"])")
    echo "$url" >/root/upload-url
    expect "GET $url" 200 "$(get "https://bakery.localhost$url")"
    cmp /root/resp.b /root/cake.txt
    contains "gallery_image" "drill-cake" "$(rows)"'
url=$(ct 'cat /root/upload-url' </dev/null)
sum_a=$(ct 'sha256sum </root/cake.txt | cut -d" " -f1' </dev/null)
rows_a=$(ct "$E2E_PRELUDE"'
rows' </dev/null)
info "upload: $url (sha256 $sum_a)"
info "rows on A: $(printf '%s' "$rows_a" | tr '\n' ' ')"

check "A: /etc/sum/rclone.conf (root, 0600) defines both remotes; the S3 bucket exists; sumctl check says they answer" '
    install -m 0600 -o root -g root /root/in/rclone.conf /etc/sum/rclone.conf
    install -m 0600 -o root -g root /root/in/rclone-sftp.key /etc/sum/rclone-sftp.key
    rcl lsd drill-sftp:/srv/offsite-store/sftp >/dev/null
    if [ -e /root/in/s3s-fs ]; then
        rcl mkdir drill-s3:bakery-backups
        rcl lsd drill-s3: | grep -q bakery-backups
    fi'

n=0
for remote in $remotes; do
    n=$((n + 1))
    target=$(target_of "$remote")
    E2E_UNITS=(sum-backup@bakery.service)
    check "A: offsite = \"$target\"; sum-backup@bakery (the timer's service) copies and verifies it" "
        set_offsite '$target'
        sumctl check /etc/sum/sites/bakery.toml
        systemctl daemon-reload
        contains 'systemctl list-timers' sum-backup@bakery.timer \"\$(systemctl list-timers --all --no-pager)\"
        since=\$(date +%s.%6N)
        sleep 1
        systemctl start sum-backup@bakery
        expect 'sum-backup@bakery Result' success \"\$(systemctl show -P Result sum-backup@bakery)\"
        j=\$(journalctl -u sum-backup@bakery --since @\$since --no-pager -o cat)
        contains 'the backup journal' 'off-host: verified bakery-' \"\$j\"
        contains 'the backup journal' ' on $target/bakery (' \"\$j\"
        contains 'the backup journal' 'off-host: media mirrored to $target/bakery/media' \"\$j\"
        # The upload is on the storage (the servers keep files as files).
        cmp /srv/sum/bakery/media/${url#/media/} \
            $(stored_at "$remote")/bakery/media/${url#/media/}"
    ct "journalctl -u sum-backup@bakery --no-pager -o cat | grep -e 'off-host: verified' -e 'off-host: media' | tail -n 2" </dev/null \
        | sed 's/^/    /' || true
done

# What the operator keeps off the server: the site file and the .env.
ct 'cat /etc/sum/sites/bakery.toml' </dev/null >"$VAULT/bakery.toml"
ct 'cat /srv/sum/bakery/.env' </dev/null >"$VAULT/bakery.env"
chmod 0600 "$VAULT/bakery.env"

# ---------------------------------------------------------------------------
# Faults on host A, against the real servers: wrong credentials, and a full
# remote. Each failed run says why, keeps its local backup and records
# nothing; the next good run leaves no local backup without its copy.
# ---------------------------------------------------------------------------

step "host A: faults against the storage servers"
E2E_UNITS=(sum-backup@bakery.service ssh.service drill-s3.service)
ct 'cp /etc/sum/rclone.conf /root/rclone.good
    ssh-keygen -q -t ed25519 -N "" -C not-authorized -f /etc/sum/wrong.key' </dev/null
for remote in $remotes; do
    target=$(target_of "$remote")
    case $remote in
    sftp) breaks="sed -i 's|^key_file = .*|key_file = /etc/sum/wrong.key|' /etc/sum/rclone.conf" ;;
    s3) breaks="sed -i 's|^secret_access_key = .*|secret_access_key = not-the-secret|' /etc/sum/rclone.conf" ;;
    esac
    check "A fault ($remote): wrong credentials fail the unit and keep the backup; the next run copies it" "
        set_offsite '$target'
        $breaks
        backup_fails
        contains 'the journal' 'the off-host copy to $target/bakery failed; the local backup is verified and kept' \"\$j\"
        newest=\$(cd /srv/sum/bakery/backups && ls bakery-*.sql.gz | tail -n 1)
        listing=\$(sum-backup bakery --list)
        contains 'sum-backup --list' \"\$newest\" \"\$listing\"
        contains 'sum-backup --list' 'NOT OFF-HOST YET' \"\$listing\"
        install -m 0600 /root/rclone.good /etc/sum/rclone.conf
        backup_works
        contains 'the journal' 'off-host: verified bakery-' \"\$j\"
        listing=\$(sum-backup bakery --list)
        if printf '%s\n' \"\$listing\" | grep -q 'NOT OFF-HOST YET'; then
            printf 'a backup is still not off-host:\n%s\n' \"\$listing\"; exit 1
        fi"
    ct "journalctl -u sum-backup@bakery --no-pager -o cat | grep -A 4 'the off-host copy to' | tail -n 5" </dev/null \
        | sed 's/^/    /' || true
done
if [ "${remotes#*sftp}" != "$remotes" ]; then
    check "A fault (sftp): a full remote fails the unit and keeps the backup; once it has room, the next run copies it" "
        install -d /srv/full
        mount -t tmpfs -o size=16m tmpfs /srv/full
        head -c 32M /dev/zero >/srv/full/filler 2>/dev/null || true
        expect 'free bytes on the remote' 0 \"\$(df --output=avail -B1 /srv/full | tail -n 1 | tr -d ' ')\"
        set_offsite drill-sftp:/srv/full/b
        backup_fails
        contains 'the journal' 'the off-host copy to drill-sftp:/srv/full/b/bakery failed; the local backup is verified and kept' \"\$j\"
        contains 'sum-backup --list' 'NOT OFF-HOST YET' \"\$(sum-backup bakery --list)\"
        rm /srv/full/filler
        backup_works
        contains 'the journal' 'off-host: verified bakery-' \"\$j\"
        if sum-backup bakery --list | grep -q 'NOT OFF-HOST YET'; then exit 1; fi
        cmp /srv/sum/bakery/media/${url#/media/} /srv/full/b/bakery/media/${url#/media/}
        umount /srv/full"
    ct "journalctl -u sum-backup@bakery --no-pager -o cat | grep -A 4 'the off-host copy to drill-sftp:/srv/full' | tail -n 5" </dev/null \
        | sed 's/^/    /' || true
fi

step "host A destroyed"
destroy_host
info "the storage directory is all that is left of it:"
find "$STORE" -maxdepth 5 -not -name '.*' | sed "s|^$STORE|    store|"

# ---------------------------------------------------------------------------
# Host B, once per remote
# ---------------------------------------------------------------------------

n=0
for remote in $remotes; do
    n=$((n + 1))
    target=$(target_of "$remote")
    [ "$n" = 1 ] || destroy_host
    step "host B ($remote): a fresh host recovers the bakery from $target"
    E2E_UNITS=($E2E_PG_UNIT caddy.service ssh.service drill-s3.service)
    e2e_boot "$image"
    stage_common
    cp "$VAULT/bakery.toml" "$VAULT/bakery.env" "$VAULT/rclone.conf" "$VAULT/rclone-sftp.key" "$E2E_STAGE/"
    storage_up
    # The site's private package index, where its deploys find wheels
    # (a network index on a real host).
    ct 'rm -rf /srv/wheels && cp -r /root/in/wheels /srv/wheels && chmod -R a+rX /srv/wheels' </dev/null

    started=$(date +%s)
    E2E_UNITS=(sum-deploy@bakery.service sum-gunicorn@bakery.service caddy.service)
    check "B ($remote): the package, the site file, the .env and rclone's configuration; sumctl new bakery" "
        apt-get install -y -q -o Dpkg::Use-Pty=0 /root/in/$debname >/dev/null
        # The saved site file names the last offsite A used: pointed at
        # the storage this host recovers from.
        sed 's|^offsite = .*|offsite = \"$target\"|' /root/in/bakery.toml >/etc/sum/sites/bakery.toml
        grep -qx 'offsite = \"$target\"' /etc/sum/sites/bakery.toml
        install -m 0600 /root/in/rclone.conf /etc/sum/rclone.conf
        install -m 0600 /root/in/rclone-sftp.key /etc/sum/rclone-sftp.key
        install -d -m 0750 /srv/sum/bakery
        # The saved .env as it is: sumctl new makes the role, database and
        # Redis it names, with its passwords, and gives it its owner.
        install -m 0600 /root/in/bakery.env /srv/sum/bakery/.env
        out=\$(sumctl new bakery)
        printf '%s\n' \"\$out\"
        contains 'sumctl new' 'as the .env' \"\$out\"
        contains 'sumctl new' 'created Redis redis-server@sum-bakery.service' \"\$out\"
        cmp /root/in/bakery.env /srv/sum/bakery/.env
        expect 'the .env' 'root:sum-bakery 640' \"\$(stat -c '%U:%G %a' /srv/sum/bakery/.env)\"
        sumctl check
        systemctl daemon-reload"
    check "B ($remote): sum-restore bakery offsite:latest --media fetches, verifies and loads the database and the media" '
        out=$(sum-restore bakery offsite:latest --i-know-this-will-overwrite --media 2>&1) || { echo "$out"; exit 1; }
        printf "%s\n" "$out" | tail -n 6
        contains "sum-restore" "restored the off-host media" "$out"
        contains "gallery_image" "drill-cake" "$(rows)"
        expect "media/" "sum-bakery:caddy 2750" "$(stat -c "%U:%G %a" /srv/sum/bakery/media)"'
    check "B ($remote): the deploy; the site serves" '
        systemctl start sum-deploy@bakery
        expect "sum-deploy@bakery Result" success "$(systemctl show -P Result sum-deploy@bakery)"
        serving() { [ "$(get https://bakery.localhost/)" = 200 ]; }
        poll 60 serving
        expect "https://bakery.localhost/" 200 "$(get https://bakery.localhost/)"'
    took=$(( $(date +%s) - started ))
    RESULTS+=("$(printf '%-5s %4ss  (offsite = "%s")' "$remote" "$took" "$target")")
    info "recovery time ($remote): ${took}s from host B's first command to the site serving"

    check "B ($remote): the same rows and the same media bytes through Caddy" "
        expect 'the gallery_image rows' '$rows_a' \"\$(rows)\"
        expect 'GET $url' 200 \"\$(get 'https://bakery.localhost$url')\"
        expect 'sha256 of the upload through Caddy' $sum_a \"\$(sha256sum </root/resp.b | cut -d' ' -f1)\"
        expect 'owner of the upload' sum-bakery:caddy \"\$(stat -c %U:%G '/srv/sum/bakery/media/${url#/media/}')\"
        expect 'welcome.txt' 200 \"\$(get https://bakery.localhost/media/original_images/welcome.txt)\"
        expect 'welcome.txt' 'welcome to the bakery' \"\$(cat /root/resp.b)\""
    check "B ($remote): the site takes a new upload, and its next backup copies off-host" '
        head -c 500 /dev/urandom | base64 >/root/after.txt
        expect "POST /upload/" 201 "$(get https://bakery.localhost/upload/ -F file=@/root/after.txt -F title=after-drill)"
        systemctl start sum-backup@bakery
        expect "sum-backup@bakery Result" success "$(systemctl show -P Result sum-backup@bakery)"
        contains "the backup journal" "off-host: verified bakery-" "$(journalctl -u sum-backup@bakery --no-pager -o cat)"'
done
