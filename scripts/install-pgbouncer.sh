#!/usr/bin/env bash
# Install PgBouncer from the distribution (Debian/Ubuntu) so that `make test` exercises the
# PgBouncer topologies. Where it cannot (not root, no apt-get), say so: the PgBouncer tests
# then report themselves skipped with the same hint. A failed install fails `make test`.
set -euo pipefail
if [ -n "${CONNBENCH_PGBOUNCER:-}" ] || command -v pgbouncer >/dev/null \
    || [ -x /usr/sbin/pgbouncer ] || [ -x /usr/local/sbin/pgbouncer ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing pgbouncer (apt-get) for the PgBouncer tests ..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer
else
    echo "pgbouncer is not installed and cannot be installed here (needs root and apt-get):" \
        "the PgBouncer tests will be skipped; 'sudo apt-get install pgbouncer' to run them" >&2
fi
