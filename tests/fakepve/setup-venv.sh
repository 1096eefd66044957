#!/usr/bin/env bash
# Make the Python venv the fakepve test harness runs in (tests/fakepve/harness.py).
#
# Idempotent and quiet when the venv is already there: the Rust tests run it before every
# test process, and several may start at once (a lock serialises them).
#   FAKEPVE_VENV   where the venv goes (default: <repo>/.venv-fakepve, gitignored)
# Prints the venv's python on stdout.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv=${FAKEPVE_VENV:-$repo/.venv-fakepve}
# The exact version the harness was written against: it subclasses FakePve internals.
spec='fakepve[crypto]==0.5.0'
stamp=$venv/.pve-gitops-stamp

ready() {
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$spec" ] &&
        "$venv/bin/python" -c 'import fakepve, fakepve.certs, aiohttp, cryptography' 2>/dev/null
}

if ready; then
    echo "$venv/bin/python"
    exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
    echo "setup-venv: python3 not found; install it (Debian: apt-get install python3 python3-venv)" >&2
    exit 2
fi
if ! python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
    echo "setup-venv: fakepve needs Python >= 3.10, found $(python3 --version 2>&1)" >&2
    exit 2
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "setup-venv: python3 has no venv/ensurepip support; install it (Debian: apt-get install python3-venv)" >&2
    exit 2
fi

mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi
# Another process may have finished the job while we waited for the lock.
if ready; then
    echo "$venv/bin/python"
    exit 0
fi

echo "setup-venv: creating $venv with $spec" >&2
rm -rf "$venv"
python3 -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$spec" >&2
"$venv/bin/python" -c 'import fakepve, fakepve.certs, aiohttp, cryptography'
echo "$spec" >"$stamp"
echo "$venv/bin/python"
