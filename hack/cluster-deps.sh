#!/usr/bin/env bash
# Installs what the nodes of `make cluster` run, from Debian's packages, when it is missing:
# containerd, runc, the CNI plugins, iptables, conntrack, iproute2, gcc (the pause program),
# debootstrap (the Triton image's root file system) and buildah (the operator image).
# Does nothing when all are present; needs root (apt-get).
set -euo pipefail

declare -A needs=(
  [containerd]=containerd [runc]=runc [ctr]=containerd [iptables]=iptables [conntrack]=conntrack
  [ip]=iproute2 [gcc]=gcc [debootstrap]=debootstrap [buildah]=buildah [setpriv]=util-linux [busybox]=busybox-static
)
missing=()
for program in "${!needs[@]}"; do
  command -v "$program" >/dev/null 2>&1 || missing+=("${needs[$program]}")
done
[[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
[[ -f /usr/lib/x86_64-linux-gnu/libc.a || -f /usr/lib/aarch64-linux-gnu/libc.a ]] || missing+=(libc6-dev)
if ((${#missing[@]} == 0)); then
  echo "cluster-deps: all present"
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [[ $EUID -ne 0 ]]; then
  echo "cluster-deps: missing ${missing[*]}; installing them needs root: sudo make cluster-deps" >&2
  exit 1
fi
echo "cluster-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "cluster-deps: installed ${missing[*]}"
