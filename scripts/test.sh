#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy with warnings as errors, the
# whole test suite (unit, property, integration and CLI tests), and a build
# of the fuzz targets. Installs missing Debian packages first (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh

echo "==> cargo fmt --check"
cargo fmt --all --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> cargo test"
cargo test --workspace --locked

echo "==> fuzz targets compile"
cargo check --locked --manifest-path crates/selector/fuzz/Cargo.toml

echo "==> all checks passed"
