#!/usr/bin/env bash
# Builds one development or test tool from the Go module proxy.
#
#   hack/tools.sh NAME VERSION OUTPUT
#
# NAME is one of: etcd, kube-apiserver, kubelet, kube-controller-manager,
# kube-scheduler, kube-proxy, kubectl, containerd, containerd-shim-runc-v2,
# registry, oras, cosign, controller-gen, golangci-lint. VERSION is the version of
# the tool's Go module (for the kube-* commands and kubectl, the
# k8s.io/kubernetes version). OUTPUT is the binary to
# write. The Makefile picks the versions and puts each binary in a folder
# named after its version, so a binary is rebuilt only when its version
# changes.
#
# Each tool is built in its own throwaway Go module that requires only the
# tool's module at VERSION: these tools are not go-installable as they are
# (etcd and kubernetes use replace directives) and keeping them out of our
# go.mod keeps their dependencies out of ours. Minimal version selection
# makes the result depend only on VERSION, and go.sum entries are checked
# against the checksum database as usual.
set -euo pipefail

usage() {
	echo "usage: $0 NAME VERSION OUTPUT (NAME: etcd, kube-apiserver, kubelet, kube-controller-manager, kube-scheduler, kube-proxy, kubectl, containerd, containerd-shim-runc-v2, registry, oras, cosign, controller-gen, golangci-lint)" >&2
	exit 2
}
[ $# -eq 3 ] || usage
name=$1 version=$2 out=$3

ldflags="-s -w"
case $name in
etcd)
	mod=go.etcd.io/etcd/server/v3 pkg=go.etcd.io/etcd/server/v3 ;;
kube-apiserver | kubelet | kube-controller-manager | kube-scheduler | kube-proxy | kubectl)
	mod=k8s.io/kubernetes pkg=k8s.io/kubernetes/cmd/$name
	# What kubernetes' own build (hack/lib/version.sh) stamps, so that
	# --version and the /version endpoint report the real release.
	minor=${version#v*.}
	minor=${minor%%.*}
	vpkg=k8s.io/component-base/version
	for p in $vpkg k8s.io/client-go/pkg/version; do
		ldflags+=" -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
	done
	;;
containerd | containerd-shim-runc-v2)
	# Static (CGO_ENABLED=0, as everything here): the btrfs and zfs
	# snapshotters drop out, overlayfs is what the test node uses.
	mod=github.com/containerd/containerd/v2 pkg=github.com/containerd/containerd/v2/cmd/$name
	ldflags+=" -X github.com/containerd/containerd/v2/version.Version=$version" ;;
registry)
	mod=github.com/distribution/distribution/v3 pkg=github.com/distribution/distribution/v3/cmd/registry
	ldflags+=" -X github.com/distribution/distribution/v3/version.version=$version" ;;
oras)
	mod=oras.land/oras pkg=oras.land/oras/cmd/oras ;;
cosign)
	# Signs artifacts in the verification tests, as users sign them.
	mod=github.com/sigstore/cosign/v3 pkg=github.com/sigstore/cosign/v3/cmd/cosign
	ldflags+=" -X sigs.k8s.io/release-utils/version.gitVersion=$version" ;;
controller-gen)
	mod=sigs.k8s.io/controller-tools pkg=sigs.k8s.io/controller-tools/cmd/controller-gen ;;
golangci-lint)
	mod=github.com/golangci/golangci-lint/v2 pkg=github.com/golangci/golangci-lint/v2/cmd/golangci-lint
	ldflags+=" -X main.version=${version#v}" ;;
*)
	usage ;;
esac

case $out in
/*) ;;
*) out=$PWD/$out ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/ocisync-tools.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Keep the caller's go.work and GOFLAGS (e.g. -mod=vendor) out of the tool
# module; build static, path-independent binaries.
export GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0

echo "hack/tools.sh: building $name $version (module $mod) into $out" >&2
start=$(date +%s)
cd "$work"
# go's progress lines ("go: added ...", hundreds for kubernetes) go to a log
# that is shown only when a step fails.
log=$work/go.log
quiet() {
	"$@" >>"$log" 2>&1 || {
		cat "$log" >&2
		echo "hack/tools.sh: building $name $version failed in: $*" >&2
		exit 1
	}
}
quiet go mod init ocisync.tools/"$name"

if [ "$mod" = k8s.io/kubernetes ]; then
	# kubernetes requires its staging modules (k8s.io/api, ...) at v0.0.0 and
	# replaces them with ./staging/src/...; outside its repository each must
	# be replaced with its published release instead, v0.X.Y for v1.X.Y. The
	# list comes from kubernetes' own go.mod so it tracks new modules.
	quiet go mod download "$mod@$version"
	kgomod=$(go mod download -json "$mod@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
	[ -f "$kgomod" ] || { echo "hack/tools.sh: cannot find go.mod of $mod@$version in the module cache" >&2; exit 1; }
	staging=v0.${version#v1.}
	staged=$(awk '$1 == "replace" { $1 = ""; $0 = $0 } $2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$kgomod")
	[ -n "$staged" ] || { echo "hack/tools.sh: no ./staging replace directives in $kgomod; has kubernetes changed its layout?" >&2; exit 1; }
	for m in $staged; do
		quiet go mod edit -replace "$m=$m@$staging"
	done
fi

quiet go get "$pkg@$version"
mkdir -p "$(dirname "$out")"
# Build next to the output and rename, so an interrupted build never leaves
# a file that make would take as up to date.
quiet go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg"
mv -f "$out.tmp" "$out"
echo "hack/tools.sh: built $name $version in $(($(date +%s) - start))s" >&2
