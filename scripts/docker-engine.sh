#!/usr/bin/env bash
# docker-engine.sh [PG_MAJOR]: a Docker-compatible engine and a PostgreSQL image for
# `--postgres docker`, on a machine without Docker and without a registry (what CI has).
#
# - Podman from the distribution (apt-get, as root), serving the Docker API on
#   unix:///run/podman/podman.sock (root only), detached so it outlives this script.
# - Its configuration, in /etc/containers/containers.conf.d/50-connbench.conf: runc (crun cannot
#   start containers under a hybrid cgroup hierarchy), cgroupfs and a file events log (no
#   systemd needed), a default open-files limit this machine allows; storage.conf (overlay, vfs
#   where overlay cannot mount) only when the machine has none.
# - The image localhost/postgres:PG_MAJOR-local: Debian (minbase) with postgresql-PG_MAJOR from
#   the apt mirror this machine already uses, and an entrypoint with the official postgres
#   image's contract (postgres-image/docker-entrypoint.sh). PG_MAJOR (default 15) must be a
#   version the distribution ships.
#
# Idempotent: when the service answers and the image was built by this same recipe, it takes
# seconds. Prints the `export` lines a shell needs, and writes them to .docker-engine.env at the
# repository's root (tests/conftest.py reads it). Where the engine cannot be prepared (not root,
# no apt-get), it says why, records the reason there for the tests' skip message and exits 0;
# a failed install or build fails.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root_dir=$(dirname "$here")
major=${1:-${PG_MAJOR:-15}}
image=localhost/postgres:$major-local
sock=/run/podman/podman.sock
env_file=$root_dir/.docker-engine.env
conf_dir=/etc/containers/containers.conf.d
conf=$conf_dir/50-connbench.conf

say() { echo "docker-engine: $*" >&2; }

if ! [[ $major =~ ^[0-9]+$ ]]; then
    say "PG_MAJOR must be a PostgreSQL major version (15, 16 ...), not '$major'"
    exit 2
fi

unavailable() {
    say "$1"
    printf '# written by scripts/docker-engine.sh\nCONNBENCH_DOCKER_UNAVAILABLE=%q\n' "$1" >"$env_file"
    exit 0
}

exports() {
    cat <<EOT
export DOCKER_HOST=unix://$sock
export TESTCONTAINERS_RYUK_DISABLED=true
export TESTCONTAINERS_CONNECTION_MODE=docker_host
export CONNBENCH_DOCKER_IMAGE=$image
EOT
}

# What the image is built from: a change to any of it rebuilds the image.
recipe=$(cat "$here/postgres-image/build.sh" "$here/postgres-image/docker-entrypoint.sh" \
    | sha256sum | cut -c1-16)

answering() { podman --remote --url "unix://$sock" version >/dev/null 2>&1; }

image_current() {
    [ "$(podman image inspect --format '{{index .Labels "connbench.recipe"}}' "$image" 2>/dev/null)" \
        = "$recipe" ]
}

# --- Podman's configuration (written below when it differs) -----------------------------
# Podman's defaults for root (1048576 open files and processes) fail where the hard limits
# are lower ("setrlimit ... Operation not permitted"): this machine's hard limits, processes
# no more than pid_max (podman lowers its own limit to that, and a container gets no more).
nofile=$(ulimit -Hn) nproc=$(ulimit -Hu) pid_max=$(cat /proc/sys/kernel/pid_max)
[ "$nofile" = unlimited ] && nofile=1048576
if [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pid_max" ]; then nproc=$pid_max; fi
new_conf=$(
    cat <<EOT
# Written by connbench's scripts/docker-engine.sh (rewritten on each run; delete to undo).
[containers]
# This machine's hard limits: Podman's defaults for root fail above them.
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
# crun refuses a hybrid cgroup hierarchy ("cgroups in hybrid mode not supported"); runc runs.
runtime = "runc"
# No systemd here: cgroups by hand, events to a file.
cgroup_manager = "cgroupfs"
events_logger = "file"
EOT
)

# --- fast path: already done ----------------------------------------------------------------
current() {
    [ "$(cat "$conf" 2>/dev/null)" = "$new_conf" ] && command -v podman >/dev/null \
        && [ -r "$sock" ] && answering && image_current
}
if current; then
    exports | tee "$env_file"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    unavailable "needs root (Podman's rootful service, apt-get, debootstrap): the docker tests are skipped; run 'sudo make docker-engine'"
fi

# One preparation at a time (two `make test` at once would build the image twice).
# (In /run, root's own: a file another user made in a sticky /tmp could not be trusted.)
exec 9>/run/connbench-docker-engine.lock
flock 9
if current; then
    exports | tee "$env_file"
    exit 0
fi

# --- packages --------------------------------------------------------------------------------
missing=()
for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null \
        || unavailable "${missing[*]} not installed and no apt-get to install them: the docker tests are skipped"
    say "installing podman runc debootstrap (apt-get) ..."
    apt-get update -qq
    # netavark/aardvark-dns and iptables publish ports; catatonit is podman's --init.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        podman runc debootstrap netavark aardvark-dns iptables catatonit >/dev/null
fi
export PATH=$PATH:/usr/sbin:/sbin

# --- configuration ---------------------------------------------------------------------------
mkdir -p "$conf_dir"
if [ "$(cat "$conf" 2>/dev/null)" != "$new_conf" ]; then
    printf '%s\n' "$new_conf" >"$conf"
    # A service this script started reads its configuration once: start it again.
    if [ -s /run/podman/service.pid ] && kill "$(cat /run/podman/service.pid)" 2>/dev/null; then
        say "configuration changed: restarting podman system service"
        for _ in $(seq 50); do answering || break; sleep 0.1; done
    fi
fi

if [ ! -e /etc/containers/storage.conf ]; then
    driver=vfs
    probe=$(mktemp -d)
    mkdir "$probe/l" "$probe/u" "$probe/w" "$probe/m"
    if mount -t overlay overlay -o "lowerdir=$probe/l,upperdir=$probe/u,workdir=$probe/w" \
        "$probe/m" 2>/dev/null; then
        umount "$probe/m"
        driver=overlay
    fi
    rm -rf "$probe"
    say "storage driver: $driver"
    cat >/etc/containers/storage.conf <<EOT
# Written by connbench's scripts/docker-engine.sh: $driver is what mounts on this machine.
[storage]
driver = "$driver"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
EOT
fi

# --- the service -----------------------------------------------------------------------------
if ! answering; then
    # The socket is root's whole machine: its directory is root's only.
    install -d -m 0700 /run/podman
    say "starting podman system service on unix://$sock (log: /run/podman/service.log)"
    setsid podman system service --time=0 "unix://$sock" \
        </dev/null >/run/podman/service.log 2>&1 9>&- &
    echo $! >/run/podman/service.pid
    for _ in $(seq 100); do
        answering && break
        sleep 0.1
    done
    answering || {
        tail -5 /run/podman/service.log >&2
        say "podman system service did not answer on $sock within 10 s"
        exit 1
    }
fi

# --- the image -------------------------------------------------------------------------------
if ! image_current; then
    # Said before minutes of debootstrap: the version must be one the distribution ships.
    if ! apt-cache show "postgresql-$major" >/dev/null 2>&1; then
        apt-get update -qq
        apt-cache show "postgresql-$major" >/dev/null 2>&1 || {
            say "no package postgresql-$major in this machine's apt sources (apt-cache search --names-only '^postgresql-[0-9]+\$' lists those there)"
            exit 1
        }
    fi
    "$here/postgres-image/build.sh" "$major" "$image" "$recipe"
fi

exports | tee "$env_file"
