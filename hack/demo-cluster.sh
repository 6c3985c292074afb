#!/usr/bin/env bash
# make demo-cluster: the story of make demo on the real one-node cluster of
# make cluster-up, with the manager running as a Pod from the image of make
# image, installed by the install bundle as a user would install it:
#
#   1. push the image layout (bin/image) to the cluster registry with oras;
#   2. make build-installer IMG=127.0.0.1:5000/ocisync:TAG and kubectl apply it;
#   3. publish a sample file with ocisync push, create the pull Secret the
#      sample names, apply config/samples pointed at the cluster registry;
#   4. wait until the Artifact is Ready and print the Pods, the Artifact and
#      its ConfigMap.
#
# The cluster keeps running: use $CLUSTER_STATE/kubectl, and stop it with
# make cluster-down. Settings: CLUSTER_STATE (the cluster of make
# cluster-up), IMAGE_DIR (the layout of make image), OCISYNC (the binary).
set -euo pipefail

STATE=${CLUSTER_STATE:?set CLUSTER_STATE to the cluster of make cluster-up}
layout=${IMAGE_DIR:?set IMAGE_DIR to the image layout of make image}
ocisync=${OCISYNC:?set OCISYNC to the ocisync binary}
root=$(cd "$(dirname "$0")/.." && pwd)
kubectl=$STATE/kubectl
enter=$STATE/enter
[ -x "$kubectl" ] || { echo "hack/demo-cluster.sh: no cluster in $STATE: run make cluster-up" >&2; exit 1; }

step() { printf '\n==> %s\n' "$*"; }
run() {
	printf '$ %s\n' "$*"
	"$@"
}

tag=$(sed -n 's/.*"org.opencontainers.image.ref.name": *"\([^"]*\)".*/\1/p' "$layout/index.json" | head -n 1)
img=127.0.0.1:5000/ocisync:$tag
step "Pushing the manager image of make image to the cluster registry"
run "$enter" "$STATE/bin/oras" cp --from-oci-layout --to-plain-http "$layout:$tag" "$img"

step "Installing the bundle of make build-installer IMG=$img"
work=$(mktemp -d "${TMPDIR:-/tmp}/ocisync-demo-cluster.XXXXXX")
trap 'rm -rf "$work"' EXIT
KUBECTL="$STATE/bin/kubectl" "$root/hack/build-installer.sh" "$img" "$work/install.yaml"
run "$kubectl" apply -f "$work/install.yaml"
run "$kubectl" -n ocisync-system rollout status deployment/ocisync-controller-manager --timeout=3m

step "Publishing a sample file with ocisync push"
ref=10.244.0.1:5000/team/app-config:v1
printf '# Published by make demo-cluster: edit me and push again.\nreplicas: 2\nimage: example/app:1.0\n' >"$work/app.yaml"
(cd "$work" && run "$enter" "$ocisync" push --plain-http "$ref" app.yaml:application/vnd.example.config.v1+yaml)

step "Applying config/samples, pointed at the cluster registry"
# The cluster registry asks for no password; the sample names a pull
# Secret, which is created as a user would create one for theirs.
"$kubectl" create secret docker-registry registry-credentials --docker-server=10.244.0.1:5000 \
	--docker-username=demo --docker-password=demo --dry-run=client -o yaml | "$kubectl" apply -f -
"$STATE/bin/kubectl" kustomize "$root/config/samples" |
	sed -e "s#reference: registry.example.com/team/app-config:v1#reference: $ref\n  plainHTTP: true#" |
	"$kubectl" apply -f -
run "$kubectl" wait --for=condition=Ready artifact/app-config --timeout=3m

step "What a user sees"
run "$kubectl" get pods -A -o wide
run "$kubectl" get artifacts -o wide
run "$kubectl" get configmap app-config -o yaml

cat <<EOF

The demo cluster keeps running. Try:
  $kubectl get pods -A
  $kubectl -n ocisync-system logs deployment/ocisync-controller-manager
  cd \$(mktemp -d) && printf 'replicas: 3\\n' >app.yaml && $enter $ocisync push --plain-http ${ref%:v1}:v1 app.yaml:application/vnd.example.config.v1+yaml
  $kubectl annotate artifact app-config reconcile.ocisync.io/requestedAt="\$(date +%s)" --overwrite   # or wait for spec.interval
  $kubectl get configmap app-config -o jsonpath='{.data.app\.yaml}'
Stop it with: make cluster-down
EOF
