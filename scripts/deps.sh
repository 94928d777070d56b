#!/usr/bin/env bash
# Installs the Debian packages tortie's build and tests need, if any are
# missing. Idempotent; run as root. Used by scripts/test.sh, scripts/demo.sh
# and .ci/run, so the list lives in one place.
set -euo pipefail

packages=(
  git pkg-config ca-certificates
  iproute2          # ip netns / links for the lab and dataplane tests
  etcd-server       # the etcd backend's tests run real etcd members
  etcd-client       # etcdctl, used by tests to inspect and set up etcd
  protobuf-compiler libprotobuf-dev   # the etcd-client crate's build generates gRPC code
  openssl           # certificates for the etcd TLS tests
  containernetworking-plugins   # reference CNI plugins (ptp, host-local, portmap, ...) the CNI tests run
  podman runc       # the CNI tests run containers with podman's CNI backend
  busybox-static    # root filesystem and ping/httpd for the CNI tests' containers
  iptables curl util-linux   # portmap's rules, published-port checks, nsenter
  nftables          # `nft`: the nftables reconciler's tests cross-check the kernel's view and benchmark against it
  iputils-ping      # `tortie lab probe --proto icmp` pings from inside a pod
  iperf3            # scripts/bench-throughput.sh: pod-to-pod TCP throughput against a bare veth pair
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo (the Rust toolchain) is not installed; install it with rustup (https://rustup.rs) and run again" >&2
  exit 1
fi
