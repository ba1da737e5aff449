#!/usr/bin/env bash
# build.sh PG_MAJOR IMAGE RECIPE: build the PostgreSQL image IMAGE with Podman, from Debian
# (debootstrap, minbase) with postgresql-PG_MAJOR from the apt mirror this machine already uses,
# trimmed, and docker-entrypoint.sh beside this file (the official postgres image's contract).
# No registry needed. RECIPE (a digest of this file and the entrypoint) is kept as the label
# connbench.recipe: docker-engine.sh rebuilds when it differs. About 2 minutes, ~370 MB.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
major=$1 image=$2 recipe=$3
say() { echo "docker-engine: $*" >&2; }

. /etc/os-release
suite=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}
# The mirror apt already uses for this suite (one-line .list or deb822 .sources).
mirror=$(
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk -v s="$suite" '$1 == "deb" { sub(/\[[^]]*\] /, ""); if ($3 == s) { print $2; exit } }'
) || true
if [ -z "$mirror" ]; then
    mirror=$(
        cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v s="$suite" '
            /^[[:space:]]*$/ { if (u != "" && ok) { print u; exit } u = ""; ok = 0; next }
            tolower($1) == "uris:" { u = $2 }
            tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
            END { if (u != "" && ok) print u }' | head -1
    ) || true
fi
[ -n "$mirror" ] || { say "no apt mirror for $suite in /etc/apt/sources.list*"; exit 1; }
old=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null) || true
work=$(mktemp -d /var/tmp/connbench-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
say "building $image: debootstrap $suite + postgresql-$major from $mirror (about 2 minutes) ..."
start=$SECONDS
if ! debootstrap --variant=minbase --include="postgresql-$major" "$suite" "$work/root" \
    "$mirror" >"$work/debootstrap.log" 2>&1; then
    grep -E '^E:' "$work/debootstrap.log" >&2 || tail -5 "$work/debootstrap.log" >&2
    say "debootstrap failed: is postgresql-$major in $suite at $mirror? (apt-cache policy postgresql-$major)"
    exit 1
fi
r=$work/root
# Trimmed: what a server in a container never reads, and the cluster the package made.
rm -rf "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* \
    "$r"/usr/share/locale/* "$r"/var/cache/apt/* "$r"/var/lib/apt/lists/* \
    "$r"/var/cache/debconf/*-old "$r"/var/log/* "$r/var/lib/postgresql/$major" \
    "$r/etc/postgresql/$major" "$r"/etc/ssl/private/ssl-cert-snakeoil.key
install -m 0755 "$here/docker-entrypoint.sh" "$r/usr/local/bin/"
mkdir -p "$r/docker-entrypoint-initdb.d"
tar --numeric-owner -C "$r" -c . | podman import --quiet \
    --change "ENV PATH=/usr/lib/postgresql/$major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change 'ENV PGDATA=/var/lib/postgresql/data' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
    --change 'CMD ["postgres"]' \
    --change 'EXPOSE 5432' \
    --change 'STOPSIGNAL SIGINT' \
    --change "LABEL connbench.recipe=$recipe" \
    --message "connbench: debootstrap $suite minbase + postgresql-$major" \
    - "$image" >/dev/null
if [ -n "$old" ]; then
    podman rmi "$old" >/dev/null 2>&1 || true  # the previous build, unless a container uses it
fi
say "built $image in $((SECONDS - start)) s ($(podman image inspect --format '{{.Size}}' "$image" | awk '{printf "%d MB", $1 / 1e6}'))"
