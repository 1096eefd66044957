#!/usr/bin/env bash
# The main job end to end on the embedded examples: validate every example system, start a
# simulated 3-node Proxmox VE cluster (fakepve, installed into a venv here), and let the
# agent converge the seed-000 cluster: plan, apply, plan again (nothing left to do).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/debug/pve-gitops
cargo build -q -p pve-gitops

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

bold "validate every example (each is a seed system from shared/seeds)"
for dir in examples/0*/; do
    "$BIN" validate "$dir"
done

bold "a broken revision is rejected as a whole, every error located"
tmp=$(mktemp -d)
cleanup() { python3 scripts/demo_cluster.py stop "$tmp/pve" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
cp -r examples/000-hashicorp-cluster "$tmp/broken"
sed -i 's/^  replicas: 3/  replica: 5/' "$tmp/broken/workers.yaml"
"$BIN" validate "$tmp/broken" || echo "(exit $?: nothing from this revision would be applied)"

bold "start a simulated cluster (fakepve in a venv)"
python=$(bash tests/fakepve/setup-venv.sh)
python3 scripts/demo_cluster.py start "$tmp/pve" "$python"
api=https://127.0.0.1:$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_port"])' "$tmp/pve/info.json")
ca=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ca_file"])' "$tmp/pve/info.json")
# The examples' secrets are encrypted to a public demo identity; keys must be private (0600).
install -m 600 examples/keys/demo-age.key "$tmp/demo-age.key"
conn=(--api-url "$api" --token-file "$tmp/pve/token" --ca-file "$ca" --identity "$tmp/demo-age.key")
example=examples/000-hashicorp-cluster

bold "pve-gitops plan $example"
"$BIN" plan "$example" "${conn[@]}" || [ $? -eq 2 ]

bold "pve-gitops apply --once $example"
"$BIN" apply --once "$example" "${conn[@]}"

bold "the cluster now"
python3 scripts/demo_cluster.py table "$tmp/pve"

bold "pve-gitops plan again: nothing left to do"
"$BIN" plan "$example" "${conn[@]}"

bold "the git loop: a bare repository made from $example, followed by pve-gitops run"
g() { git -c user.name=Operator -c user.email=ops@example.org -c init.defaultBranch=main -c commit.gpgsign=false "$@"; }
g init -q --bare "$tmp/infra.git"
g clone -q "$tmp/infra.git" "$tmp/work" 2>/dev/null
mkdir -p "$tmp/work/clusters"
cp -r "$example" "$tmp/work/clusters/hashicorp"
g -C "$tmp/work" add -A && g -C "$tmp/work" commit -q -m "hashicorp cluster" && g -C "$tmp/work" push -q origin main
run=(run --repo "file://$tmp/infra.git" --path clusters/hashicorp --cache "$tmp/cache"
     --node pve01 --no-lease --vmlist "$tmp/no-vmlist" --state-dir "$tmp/state" "${conn[@]}")
"$BIN" "${run[@]}" --passes 1 2>&1 | sed 's/^/  /'

echo "  scaling workers 3 -> 4 with a git push:"
sed -i 's/^  replicas: 3/  replicas: 4/' "$tmp/work/clusters/hashicorp/workers.yaml"
g -C "$tmp/work" commit -q -am "one more worker" && g -C "$tmp/work" push -q origin main
"$BIN" "${run[@]}" --passes 1 2>&1 | grep -E "reconciled|status committed|FAILED|error" | sed 's/^/  /'

bold "git log pve-gitops/status: what the agent reported back"
g --git-dir "$tmp/infra.git" log --format='%h %s%n%b' pve-gitops/status
g --git-dir "$tmp/infra.git" show pve-gitops/status:hashicorp/STATUS.md | head -16
