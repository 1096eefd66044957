#!/usr/bin/env bash
# Checks systemd/pve-gitops.service: `systemd-analyze verify` passes, a broken copy fails
# (so this check can fail), and the `systemd-analyze security` exposure stays at or below
# MAX_EXPOSURE. The unit is verified inside a throwaway root that holds the system's units
# and a stand-in /usr/bin/pve-gitops, so the package need not be installed.
#   usage: tests/packaging/check-unit.sh        (installs systemd via apt when root and missing)
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
unit="$here/systemd/pve-gitops.service"
max_exposure=${MAX_EXPOSURE:-2.0}

bash "$here/scripts/apt-install.sh" check-unit systemd-analyze systemd

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/usr/lib/systemd" "$root/etc/systemd/system"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
printf '#!/bin/sh\nexit 0\n' >"$root/usr/bin/pve-gitops"
chmod 755 "$root/usr/bin/pve-gitops"

verify() { # unit file -> output of systemd-analyze verify; fails when it complains
    cp "$1" "$root/etc/systemd/system/pve-gitops.service"
    local out
    out=$(systemd-analyze verify --root="$root" pve-gitops.service 2>&1) || {
        printf '%s\n' "$out"
        return 1
    }
    # verify exits 0 on some warnings (unknown keys); treat any output as a failure.
    if [ -n "$out" ]; then
        printf '%s\n' "$out"
        return 1
    fi
}

verify "$unit" || { echo "check-unit: FAIL systemd-analyze verify" >&2; exit 1; }
echo "check-unit: ok   systemd-analyze verify"

broken="$root/broken.service"
sed 's/^RestrictAddressFamilies=/RestrictAdressFamilies=/' "$unit" >"$broken"
if verify "$broken" >/dev/null; then
    echo "check-unit: FAIL verify accepted a unit with a misspelt key" >&2
    exit 1
fi
echo "check-unit: ok   a misspelt key is rejected"

exposure=$(systemd-analyze security --offline=true "$unit" 2>&1 |
    sed -n 's/.*Overall exposure level for pve-gitops.service: \([0-9.]*\).*/\1/p')
if [ -z "$exposure" ]; then
    echo "check-unit: FAIL no exposure level from systemd-analyze security" >&2
    exit 1
fi
if ! awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e <= m) }'; then
    echo "check-unit: FAIL exposure $exposure above $max_exposure" >&2
    exit 1
fi
echo "check-unit: ok   systemd-analyze security exposure $exposure (max $max_exposure)"
