#!/usr/bin/env bash
# Install PgBouncer from the distribution (Debian/Ubuntu) so that `make test` exercises the
# PgBouncer topologies. Where it cannot (not root, no apt-get), say so: the PgBouncer tests
# then report themselves skipped with the same hint. A failed install fails `make test`.
set -euo pipefail
if [ -n "${CONNBENCH_PGBOUNCER:-}" ] || command -v pgbouncer >/dev/null \
    || [ -x /usr/sbin/pgbouncer ] || [ -x /usr/local/sbin/pgbouncer ]; then
    exit 0
fi
exec "$(dirname "$0")/apt-install.sh" pgbouncer "the PgBouncer tests"
