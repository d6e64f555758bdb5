#!/usr/bin/env bash
# Builds Knative Serving's core commands from the Go module pinned in hack/tools/knative-serving/go.mod
# (knative.dev/serving v0.50.0 = Knative 1.23.0):
#   controller, webhook, autoscaler, activator, queue   (knative.dev/serving/cmd/<name>)
# as static binaries (CGO_ENABLED=0, -trimpath, -s -w), the way `ko` builds Knative's release images,
# into ${AIFN_TOOLS_CACHE:-~/.cache/aifn/bin}/knative-serving-<version>-<hash>/ and links each into
# bin/knative/<name>. Cached like hack/build-tools.sh: the hash covers go.mod, go.sum, tools.go, the Go
# version and the link flags, so a cached build costs nothing and changing any of them rebuilds.
# The images and manifests made from these binaries: tests/support/cluster/knative.py; docs/knative.md.
set -euo pipefail
shopt -s inherit_errexit

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/hack/tools/knative-serving"
BIN="$ROOT/bin/knative"
CACHE="${AIFN_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aifn/bin}"
COMPONENTS=(controller webhook autoscaler activator queue)

log() { printf 'build-knative: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v go >/dev/null 2>&1 || die "Go is not on PATH; install Go >= 1.25 (or GOTOOLCHAIN=auto) and rerun"
mkdir -p "$CACHE" "$BIN"
GO_VERSION="$(go env GOVERSION)"

# shellcheck source=lib/go-build.sh
source "$ROOT/hack/lib/go-build.sh"

version="$(module_version "$DIR" knative.dev/serving)"
[[ -n "$version" ]] || die "$DIR/go.mod does not require knative.dev/serving"
targets=()
for c in "${COMPONENTS[@]}"; do targets+=("$c=knative.dev/serving/cmd/$c"); done

started=$SECONDS
dest="$(build knative-serving "$DIR" "$version" "-s -w" "${targets[@]}")"

for c in "${COMPONENTS[@]}"; do
  [[ -x "$dest/$c" ]] || die "$dest/$c is not an executable"
  ln -sfn "$dest/$c" "$BIN/$c"
done
log "bin/knative/: ${COMPONENTS[*]} (knative.dev/serving $version) ready in $((SECONDS - started)) s"
