#!/usr/bin/env bash
# Builds Knative Eventing's commands from the Go module pinned in hack/tools/knative-eventing/go.mod
# (knative.dev/eventing v0.49.2 = Knative 1.22.2): every image that the module's config/core,
# config/channels/in-memory-channel and config/brokers/mt-channel-broker name with ko://
#   core:             controller, webhook, mtping, jobsink, requestreply,
#                     apiserver_receive_adapter, auth_proxy   (images the core controller starts pods from)
#   in-memory channel: in_memory/channel_controller, in_memory/channel_dispatcher
#   MT channel broker: mtchannel_broker, broker/ingress, broker/filter
# (knative.dev/eventing/cmd/<path>) as static binaries (CGO_ENABLED=0, -trimpath, -s -w), the way `ko`
# builds Knative's release images, into ${AIFN_TOOLS_CACHE:-~/.cache/aifn/bin}/knative-eventing-<version>-<hash>/
# and links each into bin/knative-eventing/<basename> (the name ko gives the binary: /ko-app/<basename>).
# Cached like hack/build-knative.sh (hack/lib/go-build.sh): the hash covers go.mod, go.sum, tools.go,
# the Go version, the link flags and the list of commands.
# The images and manifests made from these binaries: tests/support/cluster/eventing.py; docs/eventing.md.
set -euo pipefail
shopt -s inherit_errexit

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/hack/tools/knative-eventing"
BIN="$ROOT/bin/knative-eventing"
CACHE="${AIFN_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aifn/bin}"
# The controller first: it compiles most of what the others share.
COMMANDS=(
  controller webhook mtping jobsink requestreply apiserver_receive_adapter auth_proxy
  in_memory/channel_controller in_memory/channel_dispatcher
  mtchannel_broker broker/ingress broker/filter
)

log() { printf 'build-eventing: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v go >/dev/null 2>&1 || die "Go is not on PATH; install Go >= 1.25 (or GOTOOLCHAIN=auto) and rerun"
mkdir -p "$CACHE" "$BIN"
GO_VERSION="$(go env GOVERSION)"

# shellcheck source=lib/go-build.sh
source "$ROOT/hack/lib/go-build.sh"

version="$(module_version "$DIR" knative.dev/eventing)"
[[ -n "$version" ]] || die "$DIR/go.mod does not require knative.dev/eventing"
targets=()
for c in "${COMMANDS[@]}"; do targets+=("${c##*/}=knative.dev/eventing/cmd/$c"); done

started=$SECONDS
dest="$(build knative-eventing "$DIR" "$version" "-s -w" "${targets[@]}")"

names=()
for c in "${COMMANDS[@]}"; do
  name="${c##*/}"
  [[ -x "$dest/$name" ]] || die "$dest/$name is not an executable"
  ln -sfn "$dest/$name" "$BIN/$name"
  names+=("$name")
done
log "bin/knative-eventing/: ${names[*]} (knative.dev/eventing $version) ready in $((SECONDS - started)) s"
