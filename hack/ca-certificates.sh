#!/usr/bin/env bash
# Fetches Debian's ca-certificates package at one version and extracts it,
# for the CA bundle of the manager image (make image).
#
#   hack/ca-certificates.sh VERSION OUTPUT
#
# VERSION is a Debian version of ca-certificates (apt-cache policy
# ca-certificates lists those apt can fetch). OUTPUT is the folder to
# extract the package into; the Makefile names it after the version, so
# the package is fetched once per version. hack/ociimage concatenates its
# usr/share/ca-certificates/mozilla/*.crt into the bundle.
#
# apt-get download fetches and verifies the package through the machine's
# apt sources, as any Debian package; it needs no root and installs
# nothing.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 VERSION OUTPUT" >&2; exit 2; }
version=$1 out=$2

if [ -d "$out/usr/share/ca-certificates/mozilla" ]; then
	exit 0
fi
mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d "$out.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "$0: fetching ca-certificates=$version with apt-get download"
download() { (cd "$tmp" && apt-get download "ca-certificates=$version") >>"$tmp/apt.log" 2>&1; }
# A fresh machine may have no package lists, or older ones that lack this
# version: update them once (as root) and try again.
if ! download && ! { [ "$(id -u)" = 0 ] && apt-get update -q >>"$tmp/apt.log" 2>&1 && download; }; then
	reason=$(grep -E '^(E|W):' "$tmp/apt.log" | head -n 1 || true)
	[ -n "$reason" ] || reason=$(tail -n 1 "$tmp/apt.log")
	echo "$0: apt-get download ca-certificates=$version failed: ${reason:-no output}; set CA_CERTIFICATES_VERSION to a version apt-cache policy ca-certificates lists (after apt-get update)" >&2
	exit 1
fi
dpkg-deb -x "$tmp"/ca-certificates_*.deb "$tmp/root"
# Renamed into place when complete: the Makefile takes an existing OUTPUT
# as done.
mv "$tmp/root" "$out"
