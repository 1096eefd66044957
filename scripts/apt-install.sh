#!/usr/bin/env bash
# Install Debian packages a check needs, when they are missing and we may: root with apt.
#   usage: scripts/apt-install.sh WHO COMMAND PACKAGE...
# Exits 0 when COMMAND is (now) on PATH; otherwise says what to install and exits 1.
# A fresh machine may have no package lists yet: a failed install is retried after
# `apt-get update`.
set -euo pipefail
who=$1 cmd=$2
shift 2
command -v "$cmd" >/dev/null && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "$who: $cmd is missing (apt-get install $*)" >&2
    exit 1
fi
echo "$who: installing $* for $cmd" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1; then
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends "$@" >/dev/null
fi
command -v "$cmd" >/dev/null
