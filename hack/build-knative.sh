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

# The version of knative.dev/serving that go.mod requires (as module_version in build-tools.sh).
version="$(awk '$1 == "require" && $2 == "knative.dev/serving" { print $3; exit }
                $1 == "knative.dev/serving" && $2 != "=>"     { print $2; exit }' "$DIR/go.mod")"
[[ -n "$version" ]] || die "$DIR/go.mod does not require knative.dev/serving"
ldflags="-s -w"
targets=()
for c in "${COMPONENTS[@]}"; do targets+=("$c=knative.dev/serving/cmd/$c"); done

hash="$({ cat "$DIR/go.mod" "$DIR/go.sum" "$DIR"/*.go; printf '%s\n%s\n' "$GO_VERSION" "$ldflags ${targets[*]}"; } \
  | sha256sum | cut -c1-10)"
dest="$CACHE/knative-serving-$version-$hash"

started=$SECONDS
if [[ ! -f "$dest/.complete" ]]; then
  (
    flock 9  # one build at a time, shared with hack/build-tools.sh
    [[ -f "$dest/.complete" ]] && exit 0
    tmp="$dest.tmp.$$"
    rm -rf "$tmp" && mkdir -p "$tmp"
    for target in "${targets[@]}"; do
      t0=$SECONDS
      log "building ${target%%=*} (knative.dev/serving $version, $GO_VERSION); a first build takes minutes"
      if ! (cd "$DIR" && CGO_ENABLED=0 go build -buildvcs=false -trimpath -ldflags "$ldflags" \
        -o "$tmp/${target%%=*}" "${target#*=}"); then
        rm -rf "$tmp"
        die "go build of ${target#*=} in $DIR failed"
      fi
      log "built ${target%%=*} in $((SECONDS - t0)) s"
      printf '%s %s\n' "${target%%=*}" "$((SECONDS - t0))" >>"$tmp/.build-seconds"
    done
    touch "$tmp/.complete"
    rm -rf "$dest" && mv "$tmp" "$dest"
  ) 9>"$CACHE/.lock" >&2
fi

for c in "${COMPONENTS[@]}"; do
  [[ -x "$dest/$c" ]] || die "$dest/$c is not an executable"
  ln -sfn "$dest/$c" "$BIN/$c"
done
log "bin/knative/: ${COMPONENTS[*]} (knative.dev/serving $version) ready in $((SECONDS - started)) s"
