#!/usr/bin/env bash
# Make /usr/sbin/sshd (Debian's openssh-server) available for the SSH source tests, which
# start their own sshd on a loopback port. Idempotent and safe to run from parallel tests.
# Exit status 2: it cannot be installed here (not root, no apt); the tests then skip loudly.
set -euo pipefail

SSHD=/usr/sbin/sshd
[ -x "$SSHD" ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-sshd: $SSHD is missing and cannot be installed (needs root and apt-get)" >&2
    exit 2
fi

exec 9>/tmp/pve-gitops-install-sshd.lock
flock 9
[ -x "$SSHD" ] && exit 0

# The package's postinst would start a system-wide sshd on port 22: forbid service starts
# for the duration of the install (policy-rc.d exit 101 = action forbidden).
policy=/usr/sbin/policy-rc.d
created_policy=
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    created_policy=1
fi
cleanup() { if [ -n "$created_policy" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends openssh-server >&2; then
    apt-get update >&2
    apt-get install -y --no-install-recommends openssh-server >&2
fi
[ -x "$SSHD" ]
