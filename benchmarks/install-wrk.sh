#!/usr/bin/env bash
# Install wrk from the distribution (Debian/Ubuntu), or say how to.
set -euo pipefail
if command -v wrk >/dev/null; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
else
    echo "wrk is not installed: 'sudo apt-get install wrk' (Debian/Ubuntu) or 'brew install wrk'" >&2
    exit 1
fi
