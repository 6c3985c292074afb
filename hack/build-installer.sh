#!/usr/bin/env bash
# Writes one YAML file with everything needed to install ocisync: the
# CRDs, the RBAC and the manager Deployment (config/default), with the
# manager image set to IMAGE.
#
#   hack/build-installer.sh IMAGE OUTPUT
#
# COMPONENTS (space- or comma-separated names of folders under
# config/components, e.g. push-receiver or no-rollout) adds or removes optional
# parts.
#
# kubebuilder's Makefile edits config/manager/kustomization.yaml with
# `kustomize edit set image`; `kubectl kustomize` has no edit command, and
# a build should not change tracked files, so the image is set in a
# throwaway overlay next to OUTPUT instead.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 IMAGE OUTPUT (e.g. $0 registry.example.com/ocisync:v0.1.0 dist/install.yaml)" >&2; exit 2; }
img=$1 out=$2
kubectl=${KUBECTL:-kubectl}
root=$(cd "$(dirname "$0")/.." && pwd)

# Split IMAGE into name and tag or digest. The tag is what follows the last
# ':' unless that ':' belongs to a registry port (then a '/' follows it).
name=$img tag= digest=
case $img in
*@*) name=${img%%@*} digest=${img#*@} ;;
*:*) [[ ${img##*:} == */* ]] || { name=${img%:*} tag=${img##*:}; } ;;
esac
[ -n "$name" ] || { echo "$0: image $img has no name" >&2; exit 2; }

mkdir -p "$(dirname "$out")"
overlay=$(mktemp -d "$root/.installer.XXXXXX")
trap 'rm -rf "$overlay"' EXIT
{
	echo "apiVersion: kustomize.config.k8s.io/v1beta1"
	echo "kind: Kustomization"
	echo "resources:"
	echo "- ../config/default"
	comps=${COMPONENTS:-}; comps=${comps//,/ }
	if [ -n "${comps// /}" ]; then
		echo "components:"
		for c in $comps; do
			[ -f "$root/config/components/$c/kustomization.yaml" ] || {
				echo "$0: no component $c: the components are $(ls "$root/config/components" | tr '\n' ' ')" >&2
				exit 2
			}
			echo "- ../config/components/$c"
		done
	fi
	echo "images:"
	echo "- name: controller"
	echo "  newName: $name"
	[ -z "$tag" ] || echo "  newTag: \"$tag\""
	[ -z "$digest" ] || echo "  digest: \"$digest\""
} >"$overlay/kustomization.yaml"
"$kubectl" kustomize "$overlay" >"$out.tmp"
mv -f "$out.tmp" "$out"
echo "wrote $out with image $img" >&2
