#!/usr/bin/env bash
# Builds Flux source-controller from the Go module proxy, with the
# CustomResourceDefinitions it serves, for the benchmark (make bench) only.
#
#   hack/flux.sh VERSION ARTIFACT_VERSION OUTDIR
#
# VERSION is the version of github.com/fluxcd/source-controller.
# ARTIFACT_VERSION is the version of github.com/fluxcd/pkg/artifact to build
# it with: the proxy here does not serve the one source-controller requires
# (v1.9.6 requires v0.18.3: 403 "not available"), so it is replaced.
# Writes OUTDIR/source-controller, OUTDIR/crds/*.yaml (from the module's
# config/crd/bases) and OUTDIR/source-controller.version, which holds
# "VERSION ARTIFACT_VERSION": source-controller has no version flag, so
# this stamp is how a later run (and the Makefile) knows what the binary
# is. When the binary exists and the stamp matches, nothing is rebuilt.
#
# As in hack/tools.sh, the build happens in a throwaway Go module, so that
# source-controller's dependencies stay out of our go.mod. The module
# requires only source-controller; its replace directives that name
# published modules (go-digest with BLAKE3, which its digest package
# needs) are copied over, as a replace applies only in the main module.
set -euo pipefail

usage() {
	echo "usage: $0 VERSION ARTIFACT_VERSION OUTDIR" >&2
	exit 2
}
[ $# -eq 3 ] || usage
version=$1 artifact=$2 out=$3
mod=github.com/fluxcd/source-controller
artmod=github.com/fluxcd/pkg/artifact

case $out in
/*) ;;
*) out=$PWD/$out ;;
esac
bin=$out/source-controller
stamp=$out/source-controller.version

if [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version $artifact" ] &&
	compgen -G "$out/crds/*.yaml" >/dev/null; then
	echo "hack/flux.sh: $bin is source-controller $version (pkg/artifact $artifact) already" >&2
	exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ocisync-flux.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Keep the caller's go.work and GOFLAGS (e.g. -mod=vendor) out of the
# module; build a static, path-independent binary.
export GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0

echo "hack/flux.sh: building source-controller $version (pkg/artifact $artifact) into $out" >&2
start=$(date +%s)
cd "$work"
log=$work/go.log
quiet() {
	"$@" >>"$log" 2>&1 || {
		cat "$log" >&2
		echo "hack/flux.sh: building source-controller $version failed in: $*" >&2
		exit 1
	}
}
quiet go mod init ocisync-flux-build

quiet go mod download "$mod@$version"
info=$(go mod download -json "$mod@$version")
gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"$info")
src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$info")
if [ ! -f "$gomod" ] || [ ! -d "$src" ]; then
	echo "hack/flux.sh: cannot find $mod@$version in the module cache" >&2
	exit 1
fi
# "replace OLD => NEW VERSION", on a line of its own or in a block; local
# paths (./api, a module of its own that the proxy serves) are left out.
replaces=$(awk '$1 == "replace" { $1 = ""; $0 = $0 } $2 == "=>" && NF == 4 && $3 !~ /^[.\/]/ { print $1 "=" $3 "@" $4 }' "$gomod")
for r in $replaces; do
	quiet go mod edit -replace "$r"
done
quiet go mod edit -replace "$artmod=$artmod@$artifact"

quiet go get "$mod@$version"
mkdir -p "$out"
# Build next to the output and rename, so an interrupted build never
# leaves a binary that looks finished; the stamp is written last.
rm -f "$stamp"
quiet nice -n 10 go build -trimpath -ldflags "-s -w" -o "$bin.tmp" "$mod"

crds=("$src"/config/crd/bases/*.yaml)
[ -f "${crds[0]}" ] || {
	echo "hack/flux.sh: no CRDs in $src/config/crd/bases" >&2
	exit 1
}
rm -rf "$out/crds"
mkdir -p "$out/crds"
# The module cache is read-only; the copies need not be.
for f in "${crds[@]}"; do
	install -m 0644 "$f" "$out/crds/"
done

mv -f "$bin.tmp" "$bin"
echo "$version $artifact" >"$stamp"
echo "hack/flux.sh: built source-controller $version in $(($(date +%s) - start))s" >&2
