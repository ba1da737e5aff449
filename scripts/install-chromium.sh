#!/usr/bin/env bash
# Install Chromium from the distribution so that `make test` opens the HTML report in a real
# browser (see apt-install.sh for where it cannot).
set -euo pipefail
if [ -n "${CONNBENCH_CHROMIUM:-}" ] || command -v chromium >/dev/null \
    || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; then
    exit 0
fi
exec "$(dirname "$0")/apt-install.sh" chromium "the HTML report's browser tests"
