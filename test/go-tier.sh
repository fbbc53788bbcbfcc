#!/usr/bin/env bash
# What the test tiers built from Go modules share (test/cluster, test/h2spec,
# test/svid, test/otelcol): finding Go, a cached build keyed by a stamp, and
# the `npm test` step that builds a tier or says plainly that it is skipped.
#
# A tier's build.sh sets these, sources this file and calls go_tier_build:
#   label     how its messages begin ("h2spec build.sh")
#   mod       the Go module folder it builds from
#   cache     its cache folder (bin/ for the binaries, stamp, build.lock)
#   force     1 to rebuild even when the stamp matches
#   binaries  the names its go_tier_compile leaves in the folder it is given
#   go_tier_compile DIR   (a function) builds the binaries into DIR, run in
#                         $mod; it may print what it builds
# The build is skipped when the stamp says the binaries were built from the
# same inputs: the Go version and settings, the tier's build.sh, this file,
# and every go.mod, go.sum and .go file under $mod. Safe to call repeatedly
# and concurrently (a lock serialises builders). Prints how long it took.
#
# A tier's ensure.sh (the `npm test` step) runs:
#   bash test/go-tier.sh ensure "<tier>" "<what is skipped without Go>" <build.sh>

go_tier_find_go() {
  command -v go >/dev/null 2>&1 && return 0
  [ -x /usr/local/go/bin/go ] || return 1
  export PATH="/usr/local/go/bin:$PATH"
}

# label, mod, cache, force and binaries are the sourcing build.sh's.
# shellcheck disable=SC2154
go_tier_build() {
  go_tier_find_go || { echo "$label: go not found (install Go >= 1.26 or put it on PATH)" >&2; exit 2; }
  # The installed toolchain unless the caller chose one; modules as go.sum pins them.
  export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
  export GOFLAGS="${GOFLAGS:--buildvcs=false}"
  export CGO_ENABLED="${CGO_ENABLED:-0}"
  local bin="$cache/bin" stamp="$cache/stamp" want b
  mkdir -p "$bin"
  want="$({
    go version
    echo "GOTOOLCHAIN=$GOTOOLCHAIN CGO_ENABLED=$CGO_ENABLED GOFLAGS=$GOFLAGS"
    cat "$0" "${BASH_SOURCE[0]}"
    (cd "$mod" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort | xargs cat)
  } | sha256sum | cut -d' ' -f1)"

  go_tier_fresh() {
    [ "${force:-0}" != 1 ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] || return 1
    for b in "${binaries[@]}"; do [ -x "$bin/$b" ] || return 1; done
  }
  if go_tier_fresh; then echo "$label: ${binaries[*]} up to date in $bin (stamp ${want:0:12})"; return 0; fi
  # One builder at a time; whoever waited re-checks the stamp.
  exec 9>"$cache/build.lock"
  flock 9
  if go_tier_fresh; then echo "$label: ${binaries[*]} up to date in $bin (stamp ${want:0:12})"; return 0; fi

  local start tmp
  start=$(date +%s)
  rm -f "$stamp"
  tmp="$(mktemp -d "$cache/build.XXXXXX")"
  # shellcheck disable=SC2064 # the folder is known now
  trap "rm -rf '$tmp'" EXIT
  (cd "$mod" && go mod download && go_tier_compile "$tmp")
  for b in "${binaries[@]}"; do mv -f "$tmp/$b" "$bin/$b"; done
  echo "$want" >"$stamp"
  echo "$label: built ${binaries[*]} into $bin in $(($(date +%s) - start))s"
}

# ensure TIER SKIPPED-TEXT BUILD.SH
if [ "${BASH_SOURCE[0]}" = "$0" ] && [ "${1:-}" = ensure ]; then
  set -uo pipefail
  if ! go_tier_find_go; then
    echo "$2: SKIPPED (Go is not installed; $3)"
    exit 0
  fi
  if ! bash "$4"; then
    echo "$2: the build failed (see above)" >&2
    exit 1
  fi
  exit 0
fi
