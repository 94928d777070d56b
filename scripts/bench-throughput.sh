#!/usr/bin/env bash
# Pod-to-pod TCP throughput (iperf3) through tortie's dataplane, as a ratio
# to a bare veth pair measured in the same run: on one node, and across
# nodes over VXLAN, with 1,000 policies applying to the pods (so every
# endpoint chain holds 1,000 policy jumps; established traffic is accepted
# before any of them). Measured three ways: as deployed (the fast path
# carries established pod-to-pod flows on one node), with the fast path
# off (`lab up --no-fast-path`: every packet through the node's stack and
# tortie's table), and with no nftables table at all. Builds a 2-node lab
# named `bt`, removes it at the end, also on failure. Needs root.
#
# The lab's data-centre network has MTU 1550, as VXLAN underlays are
# set up, so pods get 1500 bytes like the bare pair and the ratios measure
# the dataplane alone. A second bare pair at MTU 1450 (what pods get over
# a 1500-byte underlay) shows what the 50 bytes alone cost.
#
# Single runs on a 2-core VM vary by +-15%, so every figure is the median
# of ROUNDS rounds, each round measuring the bare veth pair and then the
# pod paths back to back; a ratio is taken within its round.
# Usage: scripts/bench-throughput.sh [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-3}
rounds=${2:-7}
./scripts/deps.sh
cargo build --release --locked -q -p tortie
tortie=$(pwd)/target/release/tortie
lab=bt
a="tbench-$$-a"
b="tbench-$$-b"
c="tbench-$$-c"
d="tbench-$$-d"
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for ns in "$a" "$b" "$c" "$d"; do ip netns del "$ns" 2>/dev/null || true; done
  "$tortie" lab down "$lab" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Mbit/s of one iperf3 run; $1 = netns-exec prefix of the server, $2 = of
# the client, $3 = server address.
measure() {
  local server=$1 client=$2 addr=$3
  timeout $((seconds + 20)) $server iperf3 -s -1 >/dev/null 2>&1 &
  pids+=($!)
  sleep 0.5
  timeout $((seconds + 20)) $client iperf3 -c "$addr" -t "$seconds" -f m \
    | awk '/receiver/ {print $(NF-2)}'
}

# A bare veth pair between namespaces $1 and $2 with MTU $3.
veth_pair() {
  ip netns add "$1"
  ip netns add "$2"
  ip -n "$1" link add veth0 mtu "$3" type veth peer name veth0 mtu "$3" netns "$2"
  ip -n "$1" addr add 10.99.0.1/30 dev veth0
  ip -n "$2" addr add 10.99.0.2/30 dev veth0
  for ns in "$1" "$2"; do
    ip -n "$ns" link set veth0 up
    ip -n "$ns" link set lo up
  done
}
echo "==> baselines: bare veth pairs between two namespaces, MTU 1500 and 1450"
veth_pair "$a" "$b" 1500
veth_pair "$c" "$d" 1450
bare() { measure "ip netns exec $b" "ip netns exec $a" 10.99.0.2; }
bare_1450() { measure "ip netns exec $d" "ip netns exec $c" 10.99.0.2; }


# $1 = label; runs ROUNDS rounds of (bare, one node, across VXLAN) and
# sets <label>_{bare,local,remote} to the medians of the Mbit/s and
# <label>_{local,remote}_ratio to the medians of the in-round ratios.
rounds_of() {
  local label=$1 vb vm vl vr bs=() ls=() rs=() lr=() rr=() mr=()
  for i in $(seq 1 "$rounds"); do
    vb=$(bare)
    vm=$(bare_1450)
    vl=$(measure "$server" "$tortie lab exec $lab perf/local --" "$server_ip")
    vr=$(measure "$server" "$tortie lab exec $lab perf/remote --" "$server_ip")
    echo "    round $i/$rounds: bare $vb (MTU 1450: $vm), one node $vl, across VXLAN $vr Mbit/s" >&2
    mr+=("$(awk -v x="$vm" -v b="$vb" 'BEGIN { printf "%.3f", x / b }')")
    bs+=("$vb"); ls+=("$vl"); rs+=("$vr")
    lr+=("$(awk -v x="$vl" -v b="$vb" 'BEGIN { printf "%.3f", x / b }')")
    rr+=("$(awk -v x="$vr" -v b="$vb" 'BEGIN { printf "%.3f", x / b }')")
  done
  printf -v "${label}_bare" '%s' "$(median "${bs[@]}")"
  printf -v "${label}_local" '%s' "$(median "${ls[@]}")"
  printf -v "${label}_remote" '%s' "$(median "${rs[@]}")"
  printf -v "${label}_local_ratio" '%s' "$(median "${lr[@]}")"
  printf -v "${label}_remote_ratio" '%s' "$(median "${rr[@]}")"
  printf -v "${label}_mtu_ratio" '%s' "$(median "${mr[@]}")"
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Builds the lab `bt`: 2 nodes, 3 pods, 1,000 policies; $@ = extra
# `lab up` flags. Sets server_ip and server.
lab_up() {
  "$tortie" lab down "$lab" >/dev/null 2>&1 || true
  "$tortie" lab up "$lab" --nodes 2 --mtu 1550 "$@" >/dev/null
  "$tortie" lab pod add "$lab" node-1 perf/server --labels app=iperf,role=server >/dev/null
  "$tortie" lab pod add "$lab" node-1 perf/local --labels app=iperf,role=client >/dev/null
  "$tortie" lab pod add "$lab" node-2 perf/remote --labels app=iperf,role=client >/dev/null
  {
    for i in $(seq 0 999); do
      cat <<EOF
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: filler-$i, namespace: perf}
spec:
  order: $i
  selector: app == 'iperf'
  ingress:
  - action: Allow
    protocol: TCP
    source: {nets: [198.18.$((i / 250)).$((i % 250))/32]}
    destination: {ports: [$((10000 + i))]}
  egress:
  - action: Allow
    protocol: UDP
    destination: {nets: [198.19.$((i / 250)).$((i % 250))/32], ports: [$((20000 + i))]}
EOF
    done
    cat <<EOF
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: clients-to-server, namespace: perf}
spec:
  order: 5000
  selector: app == 'iperf'
  ingress:
  - action: Allow
    source: {selector: role == 'client'}
  egress:
  - action: Allow
EOF
  } | "$tortie" lab ctl "$lab" -- apply -f - >/dev/null
  # Wait until the policies are programmed on both nodes.
  for node in 1 2; do
    for _ in $(seq 1 100); do
      if ip netns exec "tl-$lab-n$node" "$tortie" node status -o json | grep -q '"active_policies": 100[0-9]'; then
        break
      fi
      sleep 0.2
    done
  done
  server_ip=$("$tortie" lab exec "$lab" perf/server -- ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
  server="$tortie lab exec $lab perf/server --"
}

echo "==> lab: 2 nodes, 3 pods, 1,000 policies; the fast path on"
lab_up
echo "==> $rounds rounds with tortie's table and fast path on both nodes"
rounds_of with

echo "==> the same lab with the fast path off (--no-fast-path)"
"$tortie" lab down "$lab" >/dev/null
lab_up --no-fast-path
echo "==> $rounds rounds with tortie's table, every packet through the host's stack"
rounds_of stack

# The same paths with no tortie table at all (node daemons stopped, table
# deleted): what routing through two veths and the VXLAN device costs
# without any filtering, to tell it apart from the policy's cost.
for node in 1 2; do
  pid=$(tr -d ' \n' < "/run/tortie/lab/$lab/state.json" | grep -o '"name":"node-'"$node"'","netns":"[^"]*","ip":"[^"]*","pid":[0-9]*' | grep -o '[0-9]*$')
  kill "$pid"
  while kill -0 "$pid" 2>/dev/null && ! grep -q '^[^)]*) Z' "/proc/$pid/stat" 2>/dev/null; do sleep 0.1; done
  ip netns exec "tl-$lab-n$node" nft delete table inet tortie
done
echo "==> $rounds rounds with no nftables table at all"
rounds_of without

echo
printf '%-46s %10s %8s\n' "path (${seconds} s iperf3, 1 stream; medians of $rounds)" "Mbit/s" "ratio"
printf '%-46s %10s %8s\n' "bare veth pair (baseline)" "$with_bare" "1.00"
printf '%-46s %10s %8s\n' "bare veth pair, MTU 1450" "" "$with_mtu_ratio"
printf '%-46s %10s %8s\n' "pod to pod, one node, 1,000 policies" "$with_local" "$with_local_ratio"
printf '%-46s %10s %8s\n' "pod to pod, across VXLAN, 1,000 policies" "$with_remote" "$with_remote_ratio"
printf '%-46s %10s %8s\n' "one node, 1,000 policies, no fast path" "$stack_local" "$stack_local_ratio"
printf '%-46s %10s %8s\n' "across VXLAN, 1,000 policies, no fast path" "$stack_remote" "$stack_remote_ratio"
printf '%-46s %10s %8s\n' "pod to pod, one node, no nftables at all" "$without_local" "$without_local_ratio"
printf '%-46s %10s %8s\n' "pod to pod, across VXLAN, no nftables at all" "$without_remote" "$without_remote_ratio"
