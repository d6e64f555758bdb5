# Shared by hack/build-tools.sh and hack/build-knative.sh (sourced, not run): cached builds of
# commands from the Go modules under hack/tools/. The caller sets CACHE (the cache root) and
# GO_VERSION, and defines log and die.

# module_version DIR MODULE: the version of MODULE required by DIR/go.mod.
module_version() {
  awk -v m="$2" '
    $1 == "require" && $2 == m { print $3; exit }
    $1 == m && $2 != "=>"      { print $2; exit }' "$1/go.mod"
}

# recipe_hash DIR FLAGS: a short hash of what determines the binaries built from DIR.
recipe_hash() {
  { cat "$1/go.mod" "$1/go.sum" "$1"/*.go; printf '%s\n%s\n' "$GO_VERSION" "$2"; } | sha256sum | cut -c1-10
}

# build NAME DIR VERSION LDFLAGS BINARY=PACKAGE...: build each PACKAGE of the module in DIR as
# BINARY into the cache (unless already there) and print the cache directory.
build() {
  local name="$1" dir="$2" version="$3" ldflags="$4"; shift 4
  local dest
  dest="$CACHE/$name-$version-$(recipe_hash "$dir" "$ldflags $*")"
  if [[ ! -f "$dest/.complete" ]]; then
    (
      flock 9  # one build at a time, even across concurrent `make tools`
      [[ -f "$dest/.complete" ]] && exit 0
      tmp="$dest.tmp.$$"
      rm -rf "$tmp" && mkdir -p "$tmp"
      for target in "$@"; do
        t0=$SECONDS
        log "building ${target%%=*} ($name $version, $GO_VERSION); a first build takes minutes"
        if ! (cd "$dir" && CGO_ENABLED=0 go build -buildvcs=false -trimpath -ldflags "$ldflags" \
          -o "$tmp/${target%%=*}" "${target#*=}"); then
          rm -rf "$tmp"
          die "go build of ${target#*=} in $dir failed"
        fi
        log "built ${target%%=*} in $((SECONDS - t0)) s"
      done
      touch "$tmp/.complete"
      rm -rf "$dest" && mv "$tmp" "$dest"
    ) 9>"$CACHE/.lock" >&2
  fi
  echo "$dest"
}
