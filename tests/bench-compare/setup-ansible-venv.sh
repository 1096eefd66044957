#!/usr/bin/env bash
# Make the Python venv of `make bench-compare`: Ansible for the side it compares against,
# matplotlib for the chart.
#
# Idempotent and quiet when the venv is already there.
#   ANSIBLE_VENV   where the venv goes (default: <repo>/.venv-ansible, gitignored)
# Prints the venv's bin directory on stdout.
#
# `ansible` 12.3.0 is the newest release whose ansible-core (2.19) runs on Python 3.11, the
# Debian 12 / PVE 8 python; it bundles the community.proxmox collection (proxmox_kvm moved
# there from community.general). The module talks to PVE through proxmoxer and requests,
# which the collection does not pull in: they go into the same venv. matplotlib draws the
# chart (it ships its own fonts, so a machine without any still gets labelled axes).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv=${ANSIBLE_VENV:-$repo/.venv-ansible}
spec='ansible==12.3.0 proxmoxer==2.3.0 requests==2.34.2 matplotlib==3.11.2'
stamp=$venv/.pve-gitops-stamp

ready() {
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$spec" ] &&
        "$venv/bin/python" -c 'import ansible, proxmoxer, requests, matplotlib' 2>/dev/null &&
        [ -x "$venv/bin/ansible-playbook" ]
}

if ready; then
    echo "$venv/bin"
    exit 0
fi
if ! python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "setup-ansible-venv: ansible-core 2.19 needs Python >= 3.11, found $(python3 --version 2>&1)" >&2
    exit 2
fi
echo "setup-ansible-venv: creating $venv with $spec (a few minutes, ~500 MB)" >&2
rm -rf "$venv"
python3 -m venv "$venv" >&2
# shellcheck disable=SC2086 # $spec is a list of requirements
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check $spec >&2
"$venv/bin/python" -c 'import ansible, proxmoxer, requests, matplotlib'
echo "$spec" >"$stamp"
echo "$venv/bin"
