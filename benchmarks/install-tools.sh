#!/usr/bin/env bash
# Install the benchmarks' reference tools from the distribution (Debian/Ubuntu), or say how to.
# Each argument is a Debian package whose program has the same name: wrk, nginx.
set -euo pipefail
PATH="$PATH:/usr/sbin:/sbin"  # nginx lives in /usr/sbin, outside a user's PATH
missing=()
for tool in "$@"; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} = 0 ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
    echo "not installed: ${missing[*]}: 'sudo apt-get install ${missing[*]}' (Debian/Ubuntu) or 'brew install ${missing[*]}'" >&2
    exit 1
fi
