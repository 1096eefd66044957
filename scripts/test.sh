#!/usr/bin/env bash
# The whole test suite. Test components the suite starts (fakepve in a venv) are installed
# by the tests themselves; this script only checks what it cannot install.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "test: cargo not found; install Rust (https://rustup.rs)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "test: python3 not found; apt-get install python3 python3-venv" >&2; exit 1; }

# cargo-nextest runs test binaries in parallel processes and reports slow tests; plain
# `cargo test` is the fallback on machines without it.
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
    # nextest does not run doctests.
    cargo test --workspace --doc
else
    cargo test --workspace --no-fail-fast
fi

# The package: the debug build packaged by cargo-deb, then lintian, systemd-analyze and the
# install/upgrade/remove/purge lifecycle in a throwaway overlay root (root only; as a user
# run `sudo make deb-check` for the same checks on the release build).
if [ "$(id -u)" = 0 ]; then
    make --no-print-directory deb-check DEB_PROFILE=dev
else
    echo "test: packaging checks skipped (they need root: sudo make deb-check)" >&2
fi
