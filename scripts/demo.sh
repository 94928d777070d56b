#!/usr/bin/env bash
# The main job: a 3-node tortie cluster on this machine (the lab), with
# pods in two namespaces spread over the nodes, cross-node traffic over
# VXLAN, the connectivity matrix before a policy, the policy, the matrix
# after it (checked against `tortie policy explain` pair by pair), and one
# explanation. Everything runs in network namespaces; the lab is removed
# at the end, also on failure. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh
echo "==> building tortie (release)"
cargo build --release --locked -q -p tortie
tortie=$(pwd)/target/release/tortie
lab=demo

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

"$tortie" lab down "$lab" >/dev/null 2>&1 || true
trap '"$tortie" lab down "$lab" >/dev/null 2>&1 || true' EXIT

step "$tortie" lab up "$lab" --nodes 3
step "$tortie" lab pod add "$lab" node-1 shop/web --labels app=web
step "$tortie" lab pod add "$lab" node-2 shop/api --labels app=api
step "$tortie" lab pod add "$lab" node-3 shop/db --labels app=db
step "$tortie" lab pod add "$lab" node-2 other/client --labels app=client
step "$tortie" lab status "$lab"
echo
echo "# Before any policy, the namespaces' profiles allow everything:"
step "$tortie" lab check "$lab" --proto tcp --port 80
echo
echo "# The policy: db only from api, api only from web, web open on port 80:"
step "$tortie" lab ctl "$lab" -- apply -f examples/lab-policy.yaml
echo
echo "# After it; --expect compares every pair with 'tortie policy explain':"
step "$tortie" lab check "$lab" --proto tcp --port 80 --expect
step "$tortie" lab ctl "$lab" -- policy explain --from other/client --to shop/db --proto tcp --port 80
step "$tortie" lab exec "$lab" shop/web -- ip -brief address
step ip netns exec "tl-$lab-n1" "$tortie" node status
echo
echo "==> demo finished; lab $lab removed"
