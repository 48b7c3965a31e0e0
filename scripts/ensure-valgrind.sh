#!/usr/bin/env bash
# Makes sure valgrind is here for the callgrind counts: installs Debian's
# package when it is missing and this runs as root, else says so and fails.
# Usage: scripts/ensure-valgrind.sh NAME (the caller's name, for the message).
set -euo pipefail
command -v valgrind >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
else
    echo "${1:-callgrind}: please install valgrind" >&2
    exit 1
fi
