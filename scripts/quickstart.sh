#!/usr/bin/env bash
# The CLI quickstart: the resource commands against a fresh embedded
# datastore. Builds tortie, applies a small cluster configuration, shows it
# the way calicoctl would, shows how bad input is reported, and tries the
# selector language. Removes its datastore file at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh
echo "==> building tortie (release)"
cargo build --release --locked -q -p tortie
tortie=target/release/tortie

work=$(mktemp -d /tmp/tortie-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
export TORTIE_DATASTORE="embedded:$work/datastore.db"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$tortie" apply -f examples/quickstart.yaml
step "$tortie" get ippools -o wide
step "$tortie" get tiers
step "$tortie" get networkpolicies -A -o wide
step "$tortie" get globalnetworkpolicy block-metadata -o yaml
step "$tortie" label ippool pods-v4 zone=east
step "$tortie" patch ippool pods-v6 -p '{"spec":{"disabled":true}}'
step "$tortie" get pools -o custom-columns=NAME,CIDR,DISABLED
echo
echo "# Bad input is reported per document, with the field and the reason:"
step "$tortie" apply -f examples/broken.yaml || true
step "$tortie" selector check 'app in {"web", "api", "web"} && !has(legacy)'
step "$tortie" selector match 'role == "frontend"' --labels '{"role": "frontend"}'
step "$tortie" version
echo
echo "==> demo finished; datastore $work/datastore.db removed"
