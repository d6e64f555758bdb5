#!/usr/bin/env bash
# Builds the real control-plane tools from Go modules pinned in hack/tools/*/go.mod:
#   kube-apiserver, kube-controller-manager, kubectl  (k8s.io/kubernetes)
#   kube-scheduler, kubelet, kube-proxy               (k8s.io/kubernetes; the nodes of `make cluster`)
#   etcd                                              (go.etcd.io/etcd/server/v3)
#   helm                                              (helm.sh/helm/v3)
#   ksvc-check                                        (our program over knative.dev/serving)
#   coredns                                           (github.com/coredns/coredns; cluster DNS of `make cluster`)
#   gpu-device-plugin                                 (our kubelet device plugin: fake nvidia.com/gpu)
# and links Knative's Service/Revision/PingSource/Trigger/Broker CRDs (same versions) into bin/knative-crds/.
# Each build lands in ${AIFN_TOOLS_CACHE:-~/.cache/aifn/bin}/<module>-<version>-<hash>/ and is
# linked into bin/. A cached build costs nothing; the hash covers go.mod, go.sum, sources,
# the Go version and the link flags, so changing any of them rebuilds.
# KUBEBUILDER_ASSETS (e.g. from `setup-envtest use -p path`) supplies kube-apiserver, etcd and
# kubectl when it holds them; kube-controller-manager, helm and ksvc-check are always built.
set -euo pipefail
shopt -s inherit_errexit

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/hack/tools"
BIN="$ROOT/bin"
CACHE="${AIFN_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aifn/bin}"

log() { printf 'build-tools: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v go >/dev/null 2>&1 || die "Go is not on PATH; install Go >= 1.26 (https://go.dev/dl; or Go >= 1.21 with GOTOOLCHAIN=auto, which fetches it from the Go proxy) and rerun 'make tools'"
mkdir -p "$CACHE" "$BIN"
GO_VERSION="$(go env GOVERSION)"

# module_version, recipe_hash, build: cached Go builds into $CACHE.
# shellcheck source=lib/go-build.sh
source "$ROOT/hack/lib/go-build.sh"

# link NAME PATH: point bin/NAME at PATH.
link() {
  [[ -x "$2" ]] || die "$2 is not an executable"
  ln -sfn "$2" "$BIN/$1"
}

# from_assets NAME: the binary NAME from KUBEBUILDER_ASSETS, if it is there.
from_assets() {
  [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "${KUBEBUILDER_ASSETS}/$1" ]] && echo "${KUBEBUILDER_ASSETS}/$1"
}

started=$SECONDS

# k8s.io/kubernetes: kube-apiserver, kube-controller-manager, kubectl.
k8s_dir="$TOOLS/kubernetes"
k8s_version="$(module_version "$k8s_dir" k8s.io/kubernetes)"
k8s_minor="$(cut -d. -f2 <<<"$k8s_version")"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
done
k8s_targets=()
for tool in kube-controller-manager kube-scheduler kubelet kube-proxy; do
  k8s_targets+=("$tool=k8s.io/kubernetes/cmd/$tool")
done
for tool in kube-apiserver kubectl; do
  if asset="$(from_assets "$tool")"; then
    link "$tool" "$asset"
    log "$tool from KUBEBUILDER_ASSETS ($asset)"
  else
    k8s_targets+=("$tool=k8s.io/kubernetes/cmd/$tool")
  fi
done
k8s_out="$(build kubernetes "$k8s_dir" "$k8s_version" "$k8s_ldflags" "${k8s_targets[@]}")"
for target in "${k8s_targets[@]}"; do link "${target%%=*}" "$k8s_out/${target%%=*}"; done

# etcd.
if asset="$(from_assets etcd)"; then
  link etcd "$asset"
  log "etcd from KUBEBUILDER_ASSETS ($asset)"
else
  etcd_dir="$TOOLS/etcd"
  etcd_version="$(module_version "$etcd_dir" go.etcd.io/etcd/server/v3)"
  link etcd "$(build etcd "$etcd_dir" "$etcd_version" "-s -w" etcd=go.etcd.io/etcd/server/v3)/etcd"
fi

# helm; its lint rules and `helm template` assume the Kubernetes minor of its client-go.
helm_dir="$TOOLS/helm"
helm_version="$(module_version "$helm_dir" helm.sh/helm/v3)"
helm_kube_minor="$(module_version "$helm_dir" k8s.io/client-go | cut -d. -f2)"
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$helm_kube_minor"
done
link helm "$(build helm "$helm_dir" "$helm_version" "$helm_ldflags" helm=helm.sh/helm/v3/cmd/helm)/helm"

# ksvc-check: Knative's own SetDefaults/Validate.
ksvc_dir="$TOOLS/ksvc-check"
knative_version="$(module_version "$ksvc_dir" knative.dev/serving)"
link ksvc-check "$(build ksvc-check "$ksvc_dir" "$knative_version" "-s -w -X main.version=$knative_version" ksvc-check=.)/ksvc-check"

# The cluster's own programs: CoreDNS, and fake GPUs over the kubelet's device-plugin API.
coredns_dir="$TOOLS/coredns"
coredns_version="$(module_version "$coredns_dir" github.com/coredns/coredns)"
link coredns "$(build coredns "$coredns_dir" "$coredns_version" "-s -w" coredns=github.com/coredns/coredns)/coredns"
plugin_dir="$TOOLS/gpu-device-plugin"
link gpu-device-plugin "$(build gpu-device-plugin "$plugin_dir" dev "-s -w" gpu-device-plugin=.)/gpu-device-plugin"

# Knative's CRDs at the pinned versions (serving from ksvc-check's module, eventing pinned here),
# linked into bin/knative-crds/ for the control plane to install.
KNATIVE_EVENTING_VERSION="v0.49.2"  # Knative Eventing 1.22.2
serving_crds="$(cd "$ksvc_dir" && go list -m -f '{{.Dir}}' knative.dev/serving)/config/core/300-resources"
eventing_crds="$(go mod download -json "knative.dev/eventing@$KNATIVE_EVENTING_VERSION" | awk -F'"' '$2 == "Dir" {print $4}')/config/core/resources"
mkdir -p "$BIN/knative-crds"
for crd in service revision; do
  ln -sfn "$serving_crds/$crd.yaml" "$BIN/knative-crds/serving-$crd.yaml"
done
for crd in pingsource trigger broker; do
  ln -sfn "$eventing_crds/$crd.yaml" "$BIN/knative-crds/eventing-$crd.yaml"
done
for crd in "$BIN"/knative-crds/*.yaml; do [[ -f "$crd" ]] || die "missing Knative CRD $crd"; done

log "bin/: kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl etcd helm ksvc-check coredns gpu-device-plugin ready in $((SECONDS - started)) s"
