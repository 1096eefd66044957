#!/usr/bin/env bash
# The main job on the embedded examples: validate every example system, then show what the
# agent would converge the seed-000 cluster to. (Reconciling against a simulated cluster
# joins this demo with the reconcile engine.)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/debug/pve-gitops
[ -x "$BIN" ] || cargo build -q -p pve-gitops

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

bold "validate every example (each is a seed system from shared/seeds)"
for dir in examples/*/; do
    [ -n "$(find "$dir" -maxdepth 3 -name '*.yaml' -print -quit)" ] || continue
    "$BIN" validate "$dir"
done

bold "desired state of examples/000-hashicorp-cluster (pve-gitops render --summary)"
"$BIN" render --summary examples/000-hashicorp-cluster

bold "a broken revision is rejected as a whole, every error located"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r examples/000-hashicorp-cluster/. "$tmp/"
sed -i '0,/replicas: 3/s//replicas: 3\n  replica: 5/' "$tmp"/*.yaml 2>/dev/null || true
"$BIN" validate "$tmp" || echo "(exit $?: nothing from this revision would be applied)"
