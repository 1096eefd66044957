#!/usr/bin/env bash
# Checks the .deb that `make deb` built:
#   1. lintian reports nothing (overrides, each justified, ship in the package);
#   2. the file list holds the binary, the unit, the conffile, docs, changelog, copyright,
#      man pages and bash/zsh completions;
#   3. a lifecycle in a throwaway Debian root: install (enabled, not started), upgrade
#      (a running service is restarted, an edited conffile kept), remove (stopped; config
#      and state kept), purge (state gone, /etc/pve untouched).
# The root is an overlay of this Debian system (root only, overlayfs): dpkg there sees
# the real libc6/libssl3, and nothing is written to the host. deb-systemd-invoke (what
# starts, stops and restarts) is replaced in it by a stub that logs what the scripts ask
# for; systemctl stays real (it enables offline in a chroot; daemon-reload fails harmlessly).
#   usage: tests/packaging/check-deb.sh [path/to/pve-gitops_*.deb]
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
deb=${1:-$(ls -t "$here"/target/debian/pve-gitops_*.deb 2>/dev/null | head -n 1)}
[ -n "$deb" ] && [ -f "$deb" ] || { echo "check-deb: no .deb; run make deb first" >&2; exit 1; }
fail() { echo "check-deb: FAIL $*" >&2; exit 1; }
ok() { echo "check-deb: ok   $*"; }
echo "check-deb: $deb"

# 1. lintian
bash "$here/scripts/apt-install.sh" check-deb lintian lintian || fail "lintian is missing"
# Debian's release check needs a distribution name lintian knows; ours is `unstable`.
lint=$(lintian --info --display-info --fail-on none "$deb" 2>&1 || true)
if printf '%s\n' "$lint" | grep -E "^[EW]: " >/dev/null; then
    printf '%s\n' "$lint" >&2
    fail "lintian is not clean"
fi
ok "lintian clean"

# 2. file list
list=$(dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's|^\./|/|')
for path in \
    /usr/bin/pve-gitops \
    /usr/lib/systemd/system/pve-gitops.service \
    /etc/default/pve-gitops \
    /usr/share/doc/pve-gitops/README.md \
    /usr/share/doc/pve-gitops/manifests.md \
    /usr/share/doc/pve-gitops/changelog.Debian.gz \
    /usr/share/doc/pve-gitops/copyright \
    /usr/share/doc/pve-gitops/examples/000-hashicorp-cluster/managers.yaml \
    /usr/share/man/man1/pve-gitops.1.gz \
    /usr/share/man/man1/pve-gitops-run.1.gz \
    /usr/share/bash-completion/completions/pve-gitops \
    /usr/share/zsh/vendor-completions/_pve-gitops; do
    printf '%s\n' "$list" | grep -qxF "$path" || fail "$path is not in the package"
done
printf '%s\n' "$list" | grep -q '^/etc/pve' && fail "the package ships files under /etc/pve"
dpkg-deb -f "$deb" Depends | grep -q 'libssl3' || fail "Depends lacks libssl3"
dpkg-deb -I "$deb" conffiles | grep -qx /etc/default/pve-gitops ||
    fail "/etc/default/pve-gitops is not a conffile"
ok "file list, Depends and conffiles"

# 3. lifecycle in an overlay root
[ "$(id -u)" = 0 ] || { echo "check-deb: skip the install test (needs root)"; exit 0; }
base=$(mktemp -d)
root="$base/root"
cleanup() {
    umount "$root" 2>/dev/null || true
    umount "$base" 2>/dev/null || true
    rmdir "$base" 2>/dev/null || true
}
trap cleanup EXIT
mount -t tmpfs tmpfs "$base"
mkdir -p "$base/upper" "$base/work" "$root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$root"

log=/var/log/systemd-calls
mkdir -p "$root/run/systemd/system"
printf '#!/bin/sh\necho "deb-systemd-invoke $*" >>%s\n' "$log" >"$root/usr/bin/deb-systemd-invoke"
chmod 755 "$root/usr/bin/deb-systemd-invoke"

: >"$root$log"
in_root() { chroot "$root" "$@"; }
calls() { cat "$root$log"; }
cp "$deb" "$root/pkg.deb"
in_root dpkg --purge pve-gitops >/dev/null 2>&1 || true

# install: files land, the unit is enabled, nothing is started.
in_root dpkg -i /pkg.deb >/dev/null 2>&1
in_root /usr/bin/pve-gitops --version >/dev/null || fail "the installed binary does not run"
[ -L "$root/etc/systemd/system/multi-user.target.wants/pve-gitops.service" ] ||
    fail "install did not enable pve-gitops.service"
[ -z "$(calls)" ] || fail "install started something: $(calls)"
ok "install: enabled, not started"

# upgrade (reinstall): try-restart, the edited conffile stays.
echo 'PVE_GITOPS_ARGS="--repo file:///srv/edited"' >>"$root/etc/default/pve-gitops"
mkdir -p "$root/var/lib/pve-gitops/cache" "$root/etc/pve/pve-gitops"
echo state >"$root/var/lib/pve-gitops/cache/marker"
echo cluster >"$root/etc/pve/pve-gitops/config.yaml"
: >"$root$log"
in_root dpkg -i /pkg.deb >/dev/null 2>&1
calls | grep -qx 'deb-systemd-invoke try-restart pve-gitops.service' ||
    fail "upgrade did not restart a running service: $(calls)"
grep -q 'file:///srv/edited' "$root/etc/default/pve-gitops" || fail "upgrade lost the edited conffile"
ok "upgrade: try-restart, conffile kept"

# remove: stopped; config and state kept.
: >"$root$log"
in_root dpkg -r pve-gitops >/dev/null 2>&1
calls | grep -qx 'deb-systemd-invoke stop pve-gitops.service' ||
    fail "remove did not stop the service: $(calls)"
[ ! -e "$root/usr/bin/pve-gitops" ] || fail "remove left the binary"
[ -f "$root/etc/default/pve-gitops" ] || fail "remove deleted the config"
[ -f "$root/var/lib/pve-gitops/cache/marker" ] || fail "remove deleted the state"
ok "remove: stopped, config and state kept"

# purge: state and config gone, /etc/pve untouched.
in_root dpkg -P pve-gitops >/dev/null 2>&1
[ ! -e "$root/var/lib/pve-gitops" ] || fail "purge left /var/lib/pve-gitops"
[ ! -e "$root/etc/default/pve-gitops" ] || fail "purge left /etc/default/pve-gitops"
[ -e "$root/etc/systemd/system/multi-user.target.wants/pve-gitops.service" ] &&
    fail "purge left the unit enabled"
[ "$(cat "$root/etc/pve/pve-gitops/config.yaml")" = cluster ] || fail "purge touched /etc/pve"
ok "purge: state and config gone, /etc/pve untouched"
