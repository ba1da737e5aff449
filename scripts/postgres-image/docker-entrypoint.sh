#!/bin/bash
# The entrypoint of connbench's local PostgreSQL image (scripts/docker-engine.sh builds it):
# the official postgres image's contract, so the same code drives either image.
# - `postgres [-c name=value ...]` (the default command; arguments starting with "-" get
#   `postgres` put in front). Any other command runs as given.
# - On an empty $PGDATA: initdb with the superuser $POSTGRES_USER (default postgres) and
#   $POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust), $POSTGRES_INITDB_ARGS,
#   password auth (scram-sha-256) from any address, then a temporary server on the socket only
#   creates $POSTGRES_DB (default: the user's name) and runs /docker-entrypoint-initdb.d/*.sh
#   and *.sql. The temporary server and the real one each log "ready to accept connections":
#   readiness checks wait for the second.
# - Runs PostgreSQL as the `postgres` user, as PID 1: the image's STOPSIGNAL SIGINT is its fast
#   shutdown.
set -Eeuo pipefail

if [ $# = 0 ] || [ "${1:0:1}" = - ]; then
    set -- postgres "$@"
fi
if [ "${1:-}" != postgres ]; then
    exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 0700 "$PGDATA"
    chmod 3777 /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

log() { echo "$(basename "$0"): $*" >&2; }

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_USER:=postgres}"
    : "${POSTGRES_DB:=$POSTGRES_USER}"
    : "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
        log "Database is uninitialized and superuser password is not specified:" \
            "set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust)"
        exit 1
    fi
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words, as in the official image
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:-}") \
        ${POSTGRES_INITDB_ARGS:-}
    printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

    # The temporary server: the socket only, the command's settings too (max_connections...).
    pg_ctl -D "$PGDATA" -w start -o "$(printf '%q ' "${@:2}" -c listen_addresses= -p 5432)"
    export PGUSER="$POSTGRES_USER" PGPASSWORD="${POSTGRES_PASSWORD:-}" PGHOST=/var/run/postgresql
    if [ "$POSTGRES_DB" != postgres ]; then
        psql -v ON_ERROR_STOP=1 --no-psqlrc --dbname postgres --set db="$POSTGRES_DB" \
            --quiet <<<'CREATE DATABASE :"db";'
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
        *.sh) log "running $f"; . "$f" ;;
        *.sql) log "running $f"; psql -v ON_ERROR_STOP=1 --no-psqlrc --dbname "$POSTGRES_DB" -f "$f" ;;
        *) ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
    unset PGUSER PGPASSWORD PGHOST
    log "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
