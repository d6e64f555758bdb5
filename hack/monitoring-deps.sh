#!/usr/bin/env bash
# Installs Debian's `prometheus` package (prometheus and promtool) when either is missing: the tests
# run `promtool test rules` on the chart's alerts and a real Prometheus over the operator and `aifn run`.
# Does nothing when both are present; needs root (apt-get). Debian's package enables a prometheus
# service, which is not started where policy-rc.d forbids it (containers) or no init runs.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  echo "monitoring-deps: prometheus and promtool present"
  exit 0
fi
if [[ $EUID -ne 0 ]]; then
  echo "monitoring-deps: prometheus/promtool missing; installing Debian's prometheus needs root: sudo make monitoring-deps" >&2
  exit 1
fi
echo "monitoring-deps: installing prometheus"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
echo "monitoring-deps: installed $(prometheus --version 2>&1 | head -1)"
