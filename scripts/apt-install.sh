#!/usr/bin/env bash
# apt-install.sh PACKAGE WHAT: install PACKAGE from the distribution (Debian/Ubuntu) for WHAT
# (the tests that need it). Where it cannot (not root, no apt-get), say so and exit 0: those
# tests then report themselves skipped with the same hint. A failed install fails.
set -euo pipefail
package=$1 what=$2
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing $package (apt-get) for $what ..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package"
else
    echo "$package is not installed and cannot be installed here (needs root and apt-get):" \
        "$what will be skipped; 'sudo apt-get install $package' to run them" >&2
fi
