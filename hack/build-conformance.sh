#!/usr/bin/env bash
# Builds Knative's ingress conformance suite from the Go module pinned in
# hack/tools/knative-conformance/go.mod (knative.dev/networking v0.0.0-20260727162500-c7a7b772cac9,
# the version knative.dev/serving v0.50.0 = Knative 1.23 requires):
#   ingress.test   `go test -c -tags=e2e knative.dev/networking/test/conformance/ingress` (the suite:
#                  TestIngressConformance and its 22 stable subtests; the e2e tag is required)
#   grpc-ping httpproxy retry runtime timeout wsserver
#                  knative.dev/networking/test/test_images/<name>, the programs of the test pods
# all static (CGO_ENABLED=0, -trimpath, -s -w), into
# ${AIFN_TOOLS_CACHE:-~/.cache/aifn/bin}/knative-conformance-<version>-<hash>/, each linked into
# bin/conformance/<name>. Cached like hack/build-knative.sh (hash of go.mod, go.sum, tools.go, the Go
# version and the flags; the same lock as `make tools`), so a cached build costs nothing.
# The images and the runner: tests/support/cluster/conformance.py, hack/conformance.py; docs/conformance.md.
set -euo pipefail
shopt -s inherit_errexit

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/hack/tools/knative-conformance"
BIN="$ROOT/bin/conformance"
CACHE="${AIFN_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aifn/bin}"
MODULE=knative.dev/networking
SUITE=ingress.test
SUITE_PACKAGE="$MODULE/test/conformance/ingress"
IMAGES=(grpc-ping httpproxy retry runtime timeout wsserver)
LDFLAGS="-s -w"

log() { printf 'build-conformance: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v go >/dev/null 2>&1 || die "Go is not on PATH; install Go >= 1.25 (or GOTOOLCHAIN=auto) and rerun"
mkdir -p "$CACHE" "$BIN"
GO_VERSION="$(go env GOVERSION)"

# shellcheck source=lib/go-build.sh
source "$ROOT/hack/lib/go-build.sh"

version="$(module_version "$DIR" "$MODULE")"
[[ -n "$version" ]] || die "$DIR/go.mod does not require $MODULE"

# go-build.sh's `build` runs `go build` only; the suite is a test binary (`go test -c`), so the cached
# build is done here, with the same cache key recipe (recipe_hash), the same lock and the same
# all-or-nothing rename of a finished directory.
targets=("$SUITE=test:$SUITE_PACKAGE")
for image in "${IMAGES[@]}"; do targets+=("$image=$MODULE/test/test_images/$image"); done
dest="$CACHE/knative-conformance-$version-$(recipe_hash "$DIR" "$LDFLAGS -tags=e2e ${targets[*]}")"

started=$SECONDS
if [[ ! -f "$dest/.complete" ]]; then
  (
    flock 9  # one build at a time, even across concurrent `make tools`
    [[ -f "$dest/.complete" ]] && exit 0
    tmp="$dest.tmp.$$"
    rm -rf "$tmp" && mkdir -p "$tmp"
    for target in "${targets[@]}"; do
      name="${target%%=*}" package="${target#*=}"
      t0=$SECONDS
      log "building $name ($MODULE $version, $GO_VERSION)"
      if [[ "$package" == test:* ]]; then
        cmd=(go test -c -tags=e2e -buildvcs=false -trimpath -ldflags "$LDFLAGS" -o "$tmp/$name" "${package#test:}")
      else
        cmd=(go build -buildvcs=false -trimpath -ldflags "$LDFLAGS" -o "$tmp/$name" "$package")
      fi
      if ! (cd "$DIR" && CGO_ENABLED=0 "${cmd[@]}"); then
        rm -rf "$tmp"
        die "${cmd[*]} in $DIR failed"
      fi
      log "built $name in $((SECONDS - t0)) s ($(du -h "$tmp/$name" | cut -f1))"
    done
    touch "$tmp/.complete"
    rm -rf "$dest" && mv "$tmp" "$dest"
  ) 9>"$CACHE/.lock" >&2
fi

for target in "${targets[@]}"; do
  name="${target%%=*}"
  [[ -x "$dest/$name" ]] || die "$dest/$name is not an executable"
  ln -sfn "$dest/$name" "$BIN/$name"
done
log "bin/conformance/: $SUITE ${IMAGES[*]} ($MODULE $version) ready in $((SECONDS - started)) s"
