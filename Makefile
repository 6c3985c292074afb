# ocisync: Kubernetes operator and CLI for OCI artifacts.
# Laid out like a kubebuilder go/v4 Makefile; `make help` lists the targets.

# Image for docker-build and build-installer.
IMG ?= ocisync:latest

# Version stamped into the binary (ocisync version).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS ?= -X github.com/ocisync/ocisync/internal/cli.Version=$(VERSION)
# Build tags of the binary, as in the Dockerfile. grpcnotrace: gRPC-Go,
# linked for the Rekor protobuf types sigstore-go verifies with (ocisync
# makes no gRPC call), then does not link golang.org/x/net/trace, whose
# html/template handlers turn off the linker's removal of unused methods
# in the whole binary: 18 MB less binary, about 9 MiB less manager RSS.
GOTAGS ?= grpcnotrace

# Extra flags for go test, e.g. make test GOTEST_FLAGS='-run TestPull -v'.
GOTEST_FLAGS ?=
# The race detector. Measured on 2 cores: +25 s on a cold build cache (its
# instrumented dependencies are compiled once), about +1 s per package after.
# RACE= turns it off.
RACE ?= -race
ifdef CI
# CI must run every test, never report results cached from an earlier run.
override GOTEST_FLAGS += -count=1
endif

# Time each fuzz target runs for in make fuzz.
FUZZTIME ?= 30s

# Setting SHELL to bash allows bash commands to be executed by recipes.
# Options are set to exit when a recipe line exits non-zero or a piped command fails.
SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

CONTAINER_TOOL ?= docker
KUBECTL ?= kubectl

.PHONY: all
all: build

##@ General

# The help target prints out all targets with their descriptions organized
# beneath their categories. The categories are represented by '##@' and the
# target descriptions by '##'.
.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate ClusterRole and CustomResourceDefinition objects into config/.
	"$(CONTROLLER_GEN)" rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods for the API types.
	"$(CONTROLLER_GEN)" object paths="./..."

.PHONY: api-docs
api-docs: ## Write docs/api.md, the API reference, from the Go types in api/v1alpha1.
	go run ./hack/apidocs -out docs/api.md ./api/v1alpha1

.PHONY: fmt
fmt: ## Run go fmt against code.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet against code.
	go vet ./...

.PHONY: check
check: vet ## Run go vet, then fail if any Go file is not gofmt-formatted or docs/api.md is out of date.
	@files=$$(git ls-files --cached --others --exclude-standard '*.go' 2>/dev/null || find . -name '*.go' -not -path './bin/*'); \
	unformatted=$$(for f in $$files; do [ ! -f "$$f" ] || echo "$$f"; done | xargs -r gofmt -l); \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt would change these files (run make fmt):"; echo "$$unformatted"; exit 1; \
	fi
	@go run ./hack/apidocs -check -out docs/api.md ./api/v1alpha1

.PHONY: lint
lint: golangci-lint ## Run golangci-lint.
	"$(GOLANGCI_LINT)" run --allow-parallel-runners

.PHONY: lint-fix
lint-fix: golangci-lint ## Run golangci-lint and apply its fixes.
	"$(GOLANGCI_LINT)" run --fix

# Environment the tests find their binaries in; the names are read by
# test/registry, test/manager and controller-runtime's envtest.
# They must be absolute paths: tests run in their package's folder.
TEST_ENV = KUBEBUILDER_ASSETS="$(abspath $(ENVTEST_ASSETS))" \
	OCISYNC_TEST_REGISTRY="$(abspath $(REGISTRY))" \
	OCISYNC_TEST_ORAS="$(abspath $(ORAS))" \
	OCISYNC_TEST_COSIGN="$(abspath $(COSIGN))" \
	OCISYNC_TEST_BIN="$(abspath $(LOCALBIN)/ocisync)" \
	OCISYNC_TEST_IMAGE="$(abspath $(IMAGE_DIR))" \
	$(CLUSTER_ENV)

.PHONY: test-env
test-env: ## Print the test environment as shell exports, for running go test by hand: eval "$$(make -s test-env)".
	@for kv in $(TEST_ENV); do echo "export $$kv"; done

.PHONY: test
# The cluster suite (test/e2e-cluster) needs the node's binaries, the
# manager image of make image and the cluster's own images; its package
# takes a few minutes, hence the longer -timeout.
test: check lint test-tools build image cluster-tools cluster-images ## Check formatting, vet and lint, build the test tools once, then run every test, the one-node cluster suite included (what CI runs; needs root).
	$(TEST_ENV) go test $(RACE) -timeout 30m $(GOTEST_FLAGS) ./...

.PHONY: test-unit
test-unit: ## Run only the unit tests under internal/ (no tools needed; skips the envtest suite).
	go test $(RACE) $(GOTEST_FLAGS) -skip '^TestController$$' ./internal/...

# The scale and big blob runs of make bench (test/bench): Artifact counts,
# blob size and the Artifacts' interval, which is also the steady-state
# window. E.g. make bench BENCH_N=100 BENCH_BLOB=64Mi for a quick run. The
# manager's CPU and heap profiles are kept in bin/bench-profiles.
BENCH_N ?= 100,1000,10000
BENCH_BLOB ?= 1Gi
BENCH_INTERVAL ?= 10s
# --concurrent values of the manager: the anchor's 10 and more workers.
BENCH_CONCURRENT ?= 10,50
# Secrets (48 KiB) and ConfigMaps (32 KiB) each of the cluster noise run,
# 0 to skip it. To run one section alone (scale, token, verify, blob, noise,
# shard, create or push),
# with the report in a temp file, not docs/benchmarks.md:
#   eval "$$(make -s test-env)"; OCISYNC_BENCH_ONLY=noise OCISYNC_BENCH_NOISE=1500 \
#   go test -count=1 -timeout 30m -run '^TestBench$$' -v ./test/bench
BENCH_NOISE ?= 1500
# Artifacts of the shard run (two managers) and of the run that creates
# them while the manager runs, beside Flux source-controller (make flux).
BENCH_SHARD_N ?= 2000
BENCH_CREATE_N ?= 1000
# Artifacts of the push run (10 per repository, each repository pushed
# twice), a registry notifying the manager's push receiver.
BENCH_PUSH_N ?= 100
# Artifacts of the signature verification run: the scale run's shape with
# every repository cosign-signed and spec.verify on each Artifact.
BENCH_VERIFY_N ?= 1000

.PHONY: bench
# Without the race detector: the counting proxy runs in the test process.
bench: test-tools build flux ## Run the Go benchmarks, then the runs of test/bench (scale to 10,000 Artifacts, token auth, signature verification, pull against oras, cluster noise, shards, creation while running beside Flux, push notifications), which write docs/benchmarks.md (about 35 minutes).
	$(TEST_ENV) go test -run '^$$' -bench . ./...
	$(TEST_ENV) OCISYNC_BENCH_N="$(BENCH_N)" OCISYNC_BENCH_BLOB="$(BENCH_BLOB)" OCISYNC_BENCH_INTERVAL="$(BENCH_INTERVAL)" OCISYNC_BENCH_CONCURRENT="$(BENCH_CONCURRENT)" OCISYNC_BENCH_NOISE="$(BENCH_NOISE)" \
		OCISYNC_BENCH_SHARD_N="$(BENCH_SHARD_N)" OCISYNC_BENCH_CREATE_N="$(BENCH_CREATE_N)" OCISYNC_BENCH_PUSH_N="$(BENCH_PUSH_N)" OCISYNC_BENCH_VERIFY_N="$(BENCH_VERIFY_N)" OCISYNC_BENCH_FLUX="$(abspath $(FLUX_SOURCE_CONTROLLER))" \
		OCISYNC_BENCH_OUT="$(abspath docs/benchmarks.md)" OCISYNC_BENCH_PROFILE_DIR="$(LOCALBIN)/bench-profiles" \
		go test -count=1 -timeout 90m -run '^TestBench$$' -v ./test/bench

.PHONY: fuzz
fuzz: test-tools build ## Run each Go fuzz target for FUZZTIME (default 30s).
	@set -e; found=0; \
	for pkg in $$(go list ./...); do \
		targets=$$($(TEST_ENV) go test -list '^Fuzz' "$$pkg" | grep '^Fuzz' || true); \
		for target in $$targets; do \
			found=1; \
			echo "fuzzing $$pkg $$target for $(FUZZTIME)"; \
			$(TEST_ENV) go test -run '^$$' -fuzz "^$$target\$$" -fuzztime "$(FUZZTIME)" -fuzzminimizetime 100x "$$pkg"; \
		done; \
	done; \
	if [ $$found = 0 ]; then echo "no fuzz targets found"; fi

##@ Build

.PHONY: build
# Static and -trimpath like the Dockerfile's build: the tests run the binary
# the image ships, and test/install's build of the Dockerfile's RUN line
# finds every package already compiled.
build: ## Build the ocisync binary into bin/ocisync.
	CGO_ENABLED=0 go build -trimpath -tags "$(GOTAGS)" -ldflags "$(LDFLAGS)" -o "$(LOCALBIN)/ocisync" .

.PHONY: run
run: build ## Run the controller manager against the cluster of $KUBECONFIG or ~/.kube/config (flags in RUN_ARGS).
	"$(LOCALBIN)/ocisync" manager $(RUN_ARGS)

# Flags of the demo program, e.g. DEMO_ARGS=--exit-when-ready; -h lists them.
DEMO_ARGS ?=

.PHONY: demo
demo: envtest registry build ## See it work: a local API server, registry and manager with config/samples, until Ctrl-C (no cluster needed).
	go build -o "$(LOCALBIN)/ocisync-demo" ./hack/demo
	$(TEST_ENV) "$(LOCALBIN)/ocisync-demo" $(DEMO_ARGS)

# If you wish to build the manager image targeting other platforms you can use the --platform flag.
# (i.e. docker build --platform linux/arm64). However, you must enable docker buildKit for it.
# More info: https://docs.docker.com/develop/develop-images/build_enhancements/
.PHONY: docker-build
docker-build: ## Build the container image with the manager.
	$(CONTAINER_TOOL) build --build-arg VERSION=$(VERSION) -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the container image with the manager.
	$(CONTAINER_TOOL) push $(IMG)

# make image: the manager image without Docker, as an OCI image layout
# (hack/image, hack/ociimage) that oras cp --from-oci-layout pushes. The CA
# bundle comes from Debian's ca-certificates package at this version
# (apt-cache policy ca-certificates), fetched once into bin/.
IMAGE_DIR ?= $(LOCALBIN)/image
IMAGE_PLATFORMS ?= linux/amd64 linux/arm64
CA_CERTIFICATES_VERSION ?= 20250419~deb12u2

.PHONY: image
# -s -w as in the Dockerfile; -buildvcs=false so that the binary depends
# only on the source and VERSION, not on the state of .git.
image: ## Write the manager image (IMAGE_PLATFORMS) as an OCI image layout into bin/image, tagged with the tag of IMG; no Docker needed.
	hack/ca-certificates.sh "$(CA_CERTIFICATES_VERSION)" "$(LOCALBIN)/ca-certificates-$(CA_CERTIFICATES_VERSION)"
	@for p in $(IMAGE_PLATFORMS); do \
		echo "building ocisync for $$p"; \
		CGO_ENABLED=0 GOOS=$${p%%/*} GOARCH=$${p#*/} go build -trimpath -buildvcs=false -tags "$(GOTAGS)" -ldflags "-s -w $(LDFLAGS)" \
			-o "$(LOCALBIN)/image-build/$${p%%/*}-$${p#*/}/ocisync" . ; \
	done
	go run ./hack/image -image "$(IMG)" -out "$(IMAGE_DIR)" -bin "$(LOCALBIN)/image-build" \
		-ca-certificates "$(LOCALBIN)/ca-certificates-$(CA_CERTIFICATES_VERSION)" -platforms "$(IMAGE_PLATFORMS)"

.PHONY: build-installer
build-installer: ## Write dist/install.yaml: CRDs, RBAC and the manager Deployment, with image IMG (and INSTALL_COMPONENTS, e.g. push-receiver).
	KUBECTL="$(KUBECTL)" COMPONENTS="$(INSTALL_COMPONENTS)" hack/build-installer.sh "$(IMG)" dist/install.yaml

##@ Test cluster

# A real one-node cluster (hack/cluster.sh) in a network namespace of its
# own; make cluster-up prints how to reach it. The cluster suite
# (test/e2e-cluster) starts its own, with a fresh name and state folder.
CLUSTER_STATE ?= $(LOCALBIN)/cluster
CLUSTER_NAME ?= ocisync
# The cluster's own images (pause, testtools), one OCI layout each.
CLUSTER_IMAGES ?= $(LOCALBIN)/cluster-images
# What hack/cluster.sh runs; absolute, as the tests read them too.
CLUSTER_ENV = CLUSTER_ETCD="$(abspath $(ETCD))" CLUSTER_KUBE_APISERVER="$(abspath $(KUBE_APISERVER))" \
	CLUSTER_KUBELET="$(abspath $(KUBELET))" CLUSTER_KUBE_CONTROLLER_MANAGER="$(abspath $(KUBE_CONTROLLER_MANAGER))" \
	CLUSTER_KUBE_SCHEDULER="$(abspath $(KUBE_SCHEDULER))" CLUSTER_KUBE_PROXY="$(abspath $(KUBE_PROXY))" \
	CLUSTER_KUBECTL="$(abspath $(CLUSTER_KUBECTL))" CLUSTER_CONTAINERD="$(abspath $(CONTAINERD))" \
	CLUSTER_CONTAINERD_SHIM="$(abspath $(CONTAINERD_SHIM))" CLUSTER_REGISTRY="$(abspath $(REGISTRY))" \
	CLUSTER_ORAS="$(abspath $(ORAS))" CLUSTER_IMAGES="$(abspath $(CLUSTER_IMAGES))"

.PHONY: cluster-images
cluster-images: ## Write the test cluster's own images (pause, testtools) as OCI layouts into bin/cluster-images.
	CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$(LOCALBIN)/testtools" ./test/cluster/testtools
	go run ./hack/clusterimages -testtools "$(LOCALBIN)/testtools" -out "$(CLUSTER_IMAGES)"

.PHONY: cluster-up
cluster-up: cluster-tools cluster-images ## Start the one-node cluster (root; state in CLUSTER_STATE); then use bin/cluster/kubectl.
	$(CLUSTER_ENV) CLUSTER_STATE="$(CLUSTER_STATE)" CLUSTER_NAME="$(CLUSTER_NAME)" hack/cluster.sh up

.PHONY: demo-cluster
demo-cluster: cluster-tools cluster-images image build ## make demo on the real cluster: the manager as a Pod from make image, installed by the bundle (starts make cluster-up's cluster if it is not running).
	@$(CLUSTER_ENV) CLUSTER_STATE="$(CLUSTER_STATE)" CLUSTER_NAME="$(CLUSTER_NAME)" hack/cluster.sh status || \
		$(CLUSTER_ENV) CLUSTER_STATE="$(CLUSTER_STATE)" CLUSTER_NAME="$(CLUSTER_NAME)" hack/cluster.sh up
	CLUSTER_STATE="$(CLUSTER_STATE)" IMAGE_DIR="$(IMAGE_DIR)" OCISYNC="$(LOCALBIN)/ocisync" hack/demo-cluster.sh

.PHONY: cluster-down
cluster-down: ## Stop the cluster of make cluster-up, leaving no process, mount, cgroup or network namespace.
	CLUSTER_STATE="$(CLUSTER_STATE)" CLUSTER_NAME="$(CLUSTER_NAME)" hack/cluster.sh down

##@ Deployment

ifndef ignore-not-found
  ignore-not-found = false
endif

.PHONY: install
install: manifests ## Install the CRDs into the cluster of ~/.kube/config.
	$(KUBECTL) kustomize config/crd | $(KUBECTL) apply -f -

.PHONY: uninstall
uninstall: manifests ## Remove the CRDs from the cluster. ignore-not-found=true ignores missing resources.
	$(KUBECTL) kustomize config/crd | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

.PHONY: deploy
deploy: manifests build-installer ## Deploy the manager (image IMG) to the cluster of ~/.kube/config.
	$(KUBECTL) apply -f dist/install.yaml

.PHONY: undeploy
undeploy: ## Remove the manager from the cluster. ignore-not-found=true ignores missing resources.
	$(KUBECTL) kustomize config/default | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

##@ Dependencies

## Location to install dependencies to
LOCALBIN ?= $(abspath $(CURDIR)/bin)

## Tool versions. Each binary lives in a folder named after its version, so
## changing a version here rebuilds just that tool (see hack/tools.sh).
# etcd: the minor release kubernetes $(KUBERNETES_VERSION) is tested with (its build/dependencies.yaml).
ETCD_VERSION ?= v3.7.3
KUBERNETES_VERSION ?= v1.37.2
REGISTRY_VERSION ?= v3.1.2
ORAS_VERSION ?= v1.3.6
# The cosign CLI the signature verification tests sign with.
COSIGN_VERSION ?= v3.1.3
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
# The test node's container runtime (hack/cluster.sh); runc, the CNI plugins,
# iptables and conntrack come from Debian (hack/node-deps.sh).
CONTAINERD_VERSION ?= v2.4.2
# Flux source-controller, which make bench compares against (hack/flux.sh),
# and the github.com/fluxcd/pkg/artifact it is built with: the proxy does
# not serve v0.18.3, the one v1.9.6 requires.
FLUX_SOURCE_CONTROLLER_VERSION ?= v1.9.6
FLUX_ARTIFACT_VERSION ?= v0.18.0

## Tool binaries
ETCD ?= $(LOCALBIN)/tools/etcd-$(ETCD_VERSION)/etcd
KUBE_APISERVER ?= $(LOCALBIN)/tools/kube-apiserver-$(KUBERNETES_VERSION)/kube-apiserver
REGISTRY ?= $(LOCALBIN)/tools/registry-$(REGISTRY_VERSION)/registry
ORAS ?= $(LOCALBIN)/tools/oras-$(ORAS_VERSION)/oras
COSIGN ?= $(LOCALBIN)/tools/cosign-$(COSIGN_VERSION)/cosign
CONTROLLER_GEN ?= $(LOCALBIN)/tools/controller-gen-$(CONTROLLER_TOOLS_VERSION)/controller-gen
GOLANGCI_LINT ?= $(LOCALBIN)/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint
# The one-node cluster's binaries (hack/cluster.sh), besides etcd,
# kube-apiserver and the registry above.
KUBELET ?= $(LOCALBIN)/tools/kubelet-$(KUBERNETES_VERSION)/kubelet
KUBE_CONTROLLER_MANAGER ?= $(LOCALBIN)/tools/kube-controller-manager-$(KUBERNETES_VERSION)/kube-controller-manager
KUBE_SCHEDULER ?= $(LOCALBIN)/tools/kube-scheduler-$(KUBERNETES_VERSION)/kube-scheduler
KUBE_PROXY ?= $(LOCALBIN)/tools/kube-proxy-$(KUBERNETES_VERSION)/kube-proxy
# kubectl of the cluster's own version, for the cluster suite and
# make cluster-up (the KUBECTL above is whatever is on PATH).
CLUSTER_KUBECTL ?= $(LOCALBIN)/tools/kubectl-$(KUBERNETES_VERSION)/kubectl
CONTAINERD ?= $(LOCALBIN)/tools/containerd-$(CONTAINERD_VERSION)/containerd
CONTAINERD_SHIM ?= $(LOCALBIN)/tools/containerd-shim-runc-v2-$(CONTAINERD_VERSION)/containerd-shim-runc-v2
# etcd and kube-apiserver side by side, as controller-runtime's envtest
# expects them in KUBEBUILDER_ASSETS.
ENVTEST_ASSETS ?= $(LOCALBIN)/k8s/$(KUBERNETES_VERSION)-etcd-$(ETCD_VERSION)

.PHONY: tools
tools: test-tools controller-gen golangci-lint ## Build every tool into bin/ (each only once per version).

.PHONY: test-tools
test-tools: envtest registry oras cosign ## Build the tools make test needs: etcd, kube-apiserver, registry, oras, cosign.

.PHONY: envtest
envtest: $(ENVTEST_ASSETS)/etcd $(ENVTEST_ASSETS)/kube-apiserver ## Build etcd and kube-apiserver into the KUBEBUILDER_ASSETS folder.
$(ENVTEST_ASSETS)/etcd: $(ETCD)
	mkdir -p "$(@D)" && ln -sf "$(abspath $<)" "$@"
$(ENVTEST_ASSETS)/kube-apiserver: $(KUBE_APISERVER)
	mkdir -p "$(@D)" && ln -sf "$(abspath $<)" "$@"

.PHONY: registry
registry: $(REGISTRY) ## Build the CNCF Distribution registry.
.PHONY: oras
oras: $(ORAS) ## Build the ORAS CLI.
.PHONY: cosign
cosign: $(COSIGN) ## Build the cosign CLI.
.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Build controller-gen.
.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT) ## Build golangci-lint.

$(ETCD):
	hack/tools.sh etcd "$(ETCD_VERSION)" "$@"
$(KUBE_APISERVER):
	hack/tools.sh kube-apiserver "$(KUBERNETES_VERSION)" "$@"
$(REGISTRY):
	hack/tools.sh registry "$(REGISTRY_VERSION)" "$@"
$(ORAS):
	hack/tools.sh oras "$(ORAS_VERSION)" "$@"
$(COSIGN):
	hack/tools.sh cosign "$(COSIGN_VERSION)" "$@"
$(CONTROLLER_GEN):
	hack/tools.sh controller-gen "$(CONTROLLER_TOOLS_VERSION)" "$@"
$(GOLANGCI_LINT):
	hack/tools.sh golangci-lint "$(GOLANGCI_LINT_VERSION)" "$@"
$(KUBELET):
	hack/tools.sh kubelet "$(KUBERNETES_VERSION)" "$@"
$(KUBE_CONTROLLER_MANAGER):
	hack/tools.sh kube-controller-manager "$(KUBERNETES_VERSION)" "$@"
$(KUBE_SCHEDULER):
	hack/tools.sh kube-scheduler "$(KUBERNETES_VERSION)" "$@"
$(KUBE_PROXY):
	hack/tools.sh kube-proxy "$(KUBERNETES_VERSION)" "$@"
$(CLUSTER_KUBECTL):
	hack/tools.sh kubectl "$(KUBERNETES_VERSION)" "$@"
$(CONTAINERD):
	hack/tools.sh containerd "$(CONTAINERD_VERSION)" "$@"
$(CONTAINERD_SHIM):
	hack/tools.sh containerd-shim-runc-v2 "$(CONTAINERD_VERSION)" "$@"

# Flux source-controller and its CRDs (bin/flux/crds), for make bench only.
# The binary has no version flag: hack/flux.sh writes the versions it was
# built from beside it, and a binary of other versions is remade.
FLUX_DIR ?= $(LOCALBIN)/flux
FLUX_SOURCE_CONTROLLER ?= $(FLUX_DIR)/source-controller

.PHONY: flux
flux: $(FLUX_SOURCE_CONTROLLER) ## Build Flux source-controller and its CRDs into bin/flux, for make bench.
ifneq ($(shell cat "$(FLUX_SOURCE_CONTROLLER).version" 2>/dev/null),$(FLUX_SOURCE_CONTROLLER_VERSION) $(FLUX_ARTIFACT_VERSION))
.PHONY: $(FLUX_SOURCE_CONTROLLER)
endif
$(FLUX_SOURCE_CONTROLLER):
	hack/flux.sh "$(FLUX_SOURCE_CONTROLLER_VERSION)" "$(FLUX_ARTIFACT_VERSION)" "$(FLUX_DIR)"

.PHONY: cluster-tools
cluster-tools: $(ETCD) $(KUBE_APISERVER) $(REGISTRY) $(ORAS) $(KUBELET) $(KUBE_CONTROLLER_MANAGER) $(KUBE_SCHEDULER) $(KUBE_PROXY) $(CLUSTER_KUBECTL) $(CONTAINERD) $(CONTAINERD_SHIM) ## Build the one-node cluster's binaries and install its Debian packages (needs root).
	hack/node-deps.sh
