#!/usr/bin/env bash
# A real one-node Kubernetes cluster for the end-to-end suite and for people:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy and containerd with runc, all inside a network namespace of its
# own (only lo and a bridge for the pods; no route out), plus a registry in
# that namespace for the cluster's images.
#
#   hack/cluster.sh up      start the cluster (stopping what a killed run left first)
#   hack/cluster.sh down    stop it: no process, mount, cgroup or namespace is left
#   hack/cluster.sh status  exit 0 if it runs
#   hack/cluster.sh reap    stop every cluster whose owner process has died
#
# Settings (environment):
#   CLUSTER_STATE   folder for everything the cluster writes (required, absolute)
#   CLUSTER_NAME    network namespace, node and cgroup name (default ocisync)
#   CLUSTER_OWNER_PID  a process whose death stops the cluster (a test); a
#                   watchdog runs down when it exits, and reap finds it later
#                   if the watchdog died too. Unset: the cluster runs until down.
#   CLUSTER_IMAGES  folder of OCI layouts, one per repository (pause/ is
#                   required: the Pod sandbox image); each is pushed to the
#                   cluster registry as REPOSITORY:TAG, TAG its index.json ref name
#   CLUSTER_PVS     local PersistentVolumes to create (default 4, 1Gi each,
#                   StorageClass "local")
#   CLUSTER_TEMPORARY=1  remove CLUSTER_STATE itself when the cluster is
#                   stopped (by down, the watchdog or reap): a test's cluster
#   CLUSTER_ETCD, CLUSTER_KUBE_APISERVER, CLUSTER_KUBELET,
#   CLUSTER_KUBE_CONTROLLER_MANAGER, CLUSTER_KUBE_SCHEDULER, CLUSTER_KUBE_PROXY,
#   CLUSTER_KUBECTL, CLUSTER_CONTAINERD, CLUSTER_CONTAINERD_SHIM,
#   CLUSTER_REGISTRY, CLUSTER_ORAS   the binaries (the Makefile sets them)
#
# Inside the namespace the node is 10.244.0.1 (the bridge), the API server
# https://10.244.0.1:6443 and the registry 10.244.0.1:5000 (also
# 127.0.0.1:5000, which is how containerd pulls). After up, CLUSTER_STATE
# holds kubeconfig (admin), and kubectl and enter: wrappers that run
# kubectl, or any command, inside the namespace.
set -euo pipefail

cmd=${1:-}
STATE=${CLUSTER_STATE:?set CLUSTER_STATE to the cluster state folder (an absolute path)}
case $STATE in /*) ;; *) echo "hack/cluster.sh: CLUSTER_STATE must be an absolute path, not $STATE" >&2; exit 2 ;; esac
NAME=${CLUSTER_NAME:-ocisync}
[[ $NAME =~ ^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$ ]] || {
	echo "hack/cluster.sh: CLUSTER_NAME $NAME must be a lower-case DNS label of at most 32 characters" >&2
	exit 2
}
HACK=$(cd "$(dirname "$0")" && pwd)
NETNS=/var/run/netns/$NAME
NODEIP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
REG_PORT=5000
CGROUP=ocisync-$NAME
# containerd's sockets, shims' among them, in a short folder: a Unix socket
# path has at most 107 bytes and a shim's name alone takes 65, so they cannot
# live under a state folder of any length.
SOCK=/tmp/ocisync-sock-$(printf %s "$STATE" | sha256sum | cut -c1-10)
export PATH=$STATE/bin:$PATH:/usr/local/sbin:/usr/sbin:/sbin

T0=$(date +%s.%N)
say() { echo "[cluster $NAME $(awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN{printf "%5.1fs", a-b}')] $*" >&2; }
die() {
	echo "hack/cluster.sh: $*" >&2
	exit 1
}

# cgroup_hierarchies: the cgroup roots, each with a trailing slash: the
# unified one (cgroup v2), or every v1 hierarchy but symlinked aliases.
cgroup_hierarchies() {
	if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
		echo /sys/fs/cgroup/
		return
	fi
	local h
	for h in /sys/fs/cgroup/*/; do
		[ -L "${h%/}" ] || echo "$h"
	done
}

alive() { [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# pid_alive FILE: whether the process recorded in FILE (pid and start time,
# so that a reused pid does not count) still runs.
pid_alive() {
	local f=$1 pid start now
	[ -f "$f" ] || return 1
	read -r pid start <"$f" || return 1
	alive "$pid" || return 1
	[ -z "$start" ] && return 0
	now=$(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null) || return 1
	[ "$now" = "$start" ]
}
record_pid() { # file pid
	echo "$2 $(awk '{print $22}' "/proc/$2/stat" 2>/dev/null)" >"$1"
}

# ---------------------------------------------------------------- down

# stop_procs NAME...: SIGTERM the recorded processes, wait up to STOP_WAIT
# seconds (default 10), then SIGKILL.
stop_procs() {
	local n pid start pids=() wait=${STOP_WAIT:-10}
	for n in "$@"; do
		local f=$STATE/run/$n.pid
		if pid_alive "$f"; then
			read -r pid start <"$f"
			# The watchdog runs down as itself (exec).
			[ "$pid" = $$ ] && { rm -f "$f"; continue; }
			kill "$pid" 2>/dev/null || true
			pids+=("$n:$pid")
		fi
		rm -f "$f"
	done
	local i x any
	for ((i = 0; i < wait * 10; i++)); do
		any=0
		for x in "${pids[@]}"; do alive "${x#*:}" && any=1; done
		[ $any = 0 ] && return 0
		sleep 0.1
	done
	for x in "${pids[@]}"; do
		alive "${x#*:}" && { say "${x%%:*} did not stop in ${wait}s; killing it"; kill -9 "${x#*:}" 2>/dev/null || true; }
	done
	sleep 0.2
}

# procs_under PATTERN: pids whose command line contains PATTERN.
procs_under() {
	local d cmdline
	for d in /proc/[0-9]*; do
		# Processes come and go: one that has gone is skipped quietly.
		cmdline=$({ tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null) || continue
		case $cmdline in *"$1"*) echo "${d#/proc/}" ;; esac
	done
}

down() {
	[ -d "$STATE/run" ] || { say "nothing to stop in $STATE"; return 0; }
	# The watchdog first, so that it does not run a second down.
	stop_procs watchdog
	stop_procs kube-proxy scheduler controller-manager kubelet
	# Pod containers: through runc, with the cluster's own runc root.
	local r c
	for r in "$STATE"/containerd/runc/*; do
		[ -d "$r" ] || continue
		for c in $(runc --root "$r" list -q 2>/dev/null); do runc --root "$r" kill "$c" KILL 2>/dev/null || true; done
		sleep 0.3
		for c in $(runc --root "$r" list -q 2>/dev/null); do runc --root "$r" delete -f "$c" 2>/dev/null || true; done
	done
	stop_procs containerd
	# Shims outlive containerd by design; ours name our socket.
	local p
	for p in $(procs_under "-address $SOCK/containerd.sock"); do kill -9 "$p" 2>/dev/null || true; done
	# The API server drains for many seconds on SIGTERM; nothing of its
	# state is kept (etcd's folder is made anew by up), so it gets little time.
	STOP_WAIT=2 stop_procs apiserver etcd registry
	# Anything else still running from the state folder (a wrapper, a leftover).
	for p in $(procs_under "$STATE/"); do
		[ "$p" = $$ ] || [ "$p" = "$PPID" ] || kill -9 "$p" 2>/dev/null || true
	done
	# Mounts under the state folder, deepest first (volumes, netns files, rootfs).
	local m tries
	for tries in 1 2 3; do
		mounts=$(awk -v b="$STATE/" 'index($5, b) == 1 {print $5}' /proc/self/mountinfo | sort -r)
		[ -z "$mounts" ] && break
		for m in $mounts; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
	done
	if [ -e "$NETNS" ]; then
		ip netns del "$NAME" 2>/dev/null || { umount -l "$NETNS" 2>/dev/null; rm -f "$NETNS"; }
	fi
	# The kubelet's cgroups (cgroupRoot below), deepest first.
	local h
	for h in $(cgroup_hierarchies); do
		[ -d "$h$CGROUP" ] && find "$h$CGROUP" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
	# Paths the kubelet and CNI hard-code, removed if this cluster created them.
	if [ -f "$STATE/run/created-dirs" ]; then
		sort -u "$STATE/run/created-dirs" | while read -r d; do [ -n "$d" ] && rm -rf "$d"; done
		rm -f "$STATE/run/created-dirs"
	fi
	rm -f "$STATE/run/owner"
	rm -rf "$SOCK"
	local temporary=false
	[ -f "$STATE/run/temporary" ] && temporary=true
	local left=()
	[ -e "$NETNS" ] && left+=("network namespace $NAME")
	awk -v b="$STATE/" 'index($5, b) == 1' /proc/self/mountinfo | grep -q . && left+=("mounts under $STATE")
	for h in $(cgroup_hierarchies); do [ -d "$h$CGROUP" ] && { left+=("cgroup $h$CGROUP"); break; }; done
	[ -n "$(procs_under "$STATE/" | grep -vx -e $$ -e "$PPID")" ] && left+=("processes from $STATE")
	[ ${#left[@]} -eq 0 ] || die "down left behind: ${left[*]}; run hack/cluster.sh down again, or look at $STATE/logs"
	if $temporary; then
		rm -rf "$STATE"
		rm -f "$REAP_DIR/$NAME"
	fi
	say "down"
}

# reap: stop every cluster (state folders found through the run/ links in
# the reap folder) whose owner has died: a test that was killed.
REAP_DIR=${TMPDIR:-/tmp}/ocisync-clusters
reap() {
	local link state
	mkdir -p "$REAP_DIR"
	for link in "$REAP_DIR"/*; do
		[ -L "$link" ] || continue
		state=$(readlink "$link")
		if [ ! -d "$state" ]; then
			rm -f "$link"
			continue
		fi
		if [ -f "$state/run/owner" ] && pid_alive "$state/run/owner"; then
			continue
		fi
		echo "hack/cluster.sh: stopping cluster ${link##*/} left by a process that has exited ($state)" >&2
		CLUSTER_STATE=$state CLUSTER_NAME=${link##*/} "$0" down && rm -f "$link"
	done
}

# ---------------------------------------------------------------- up

bins=(ETCD KUBE_APISERVER KUBELET KUBE_CONTROLLER_MANAGER KUBE_SCHEDULER KUBE_PROXY KUBECTL CONTAINERD CONTAINERD_SHIM REGISTRY ORAS)

start() { # name cmd...: run inside the namespace, log to logs/NAME.log
	local n=$1
	shift
	nsenter --net="$NETNS" "$@" >"$STATE/logs/$n.log" 2>&1 </dev/null &
	record_pid "$STATE/run/$n.pid" $!
}

# waitfor DESCRIPTION SECONDS CMD...: poll CMD until it succeeds.
waitfor() {
	local d=$1 t=$2 i
	shift 2
	for ((i = 0; i < t * 5; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	echo "hack/cluster.sh: timed out after ${t}s waiting for $d; the components' logs are in $STATE/logs" >&2
	for f in "$STATE"/logs/*.log; do
		echo "---- ${f##*/} (last lines)" >&2
		tail -n 15 "$f" >&2
	done
	return 1
}

inside() { nsenter --net="$NETNS" "$@"; }

write_pki() {
	local P=$STATE/pki
	# Kept between runs of one state folder (a few seconds of openssl),
	# made anew when the node name changes.
	if [ -f "$P/ca.crt" ] && [ "$(cat "$P/node-name" 2>/dev/null)" = "$NAME" ]; then
		return 0
	fi
	rm -rf "$P"
	mkdir -p "$P"
	(
		cd "$P"
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=ocisync-test-cluster-ca" 2>/dev/null
		openssl genrsa -out sa.key 2048 2>/dev/null
		openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
		cert() { # name subject [subjectAltNames]
			openssl genrsa -out "$1.key" 2048 2>/dev/null
			openssl req -new -key "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
			if [ -n "${3:-}" ]; then
				printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$3" >"$1.ext"
			else
				printf 'extendedKeyUsage=clientAuth\n' >"$1.ext"
			fi
			openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 3650 -extfile "$1.ext" 2>/dev/null
			rm -f "$1.csr" "$1.ext"
		}
		cert apiserver /CN=kube-apiserver "IP:127.0.0.1,IP:$NODEIP,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
		cert admin "/O=system:masters/CN=admin"
		cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
		cert kubelet "/O=system:nodes/CN=system:node:$NAME"
		cert controller-manager /CN=system:kube-controller-manager
		cert scheduler /CN=system:kube-scheduler
		cert kube-proxy /CN=system:kube-proxy
		for n in admin kubelet controller-manager scheduler kube-proxy; do
			cat >"$n.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $NAME
  cluster:
    server: https://$NODEIP:6443
    certificate-authority: $P/ca.crt
users:
- name: $n
  user:
    client-certificate: $P/$n.crt
    client-key: $P/$n.key
contexts:
- name: $NAME
  context: {cluster: $NAME, user: $n}
current-context: $NAME
EOF
		done
		echo "$NAME" >node-name
	)
}

write_configs() {
	local B=$STATE
	cat >"$B/registry.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $B/registry-data}
  delete: {enabled: true}
http: {addr: "0.0.0.0:$REG_PORT"}
EOF
	mkdir -p "$B/containerd/certs.d/127.0.0.1:$REG_PORT" "$B/containerd/certs.d/$NODEIP:$REG_PORT"
	for host in "127.0.0.1:$REG_PORT" "$NODEIP:$REG_PORT"; do
		cat >"$B/containerd/certs.d/$host/hosts.toml" <<EOF
server = "http://$host"
[host."http://$host"]
  capabilities = ["pull", "resolve"]
EOF
	done
	# containerd 2.x config version 4. The socket addresses, the shim socket
	# folder and runc's root must be set, or they default to /run/containerd.
	cat >"$B/containerd/config.toml" <<EOF
version = 4
root = '$B/containerd/root'
state = '$B/containerd/state'
imports = []
disabled_plugins = ['io.containerd.nri.v1.nri', 'io.containerd.snapshotter.v1.btrfs', 'io.containerd.snapshotter.v1.zfs', 'io.containerd.snapshotter.v1.devmapper', 'io.containerd.snapshotter.v1.blockfile', 'io.containerd.snapshotter.v1.erofs', 'io.containerd.differ.v1.erofs', 'io.containerd.tracing.processor.v1.otlp', 'io.containerd.internal.v1.tracing']

[plugins]
  [plugins.'io.containerd.server.v1.grpc']
    address = '$SOCK/containerd.sock'
  [plugins.'io.containerd.server.v1.ttrpc']
    address = '$SOCK/containerd.sock.ttrpc'
  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = '$SOCK/s'
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '127.0.0.1:$REG_PORT/pause:v1'
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = '$B/containerd/certs.d'
  [plugins.'io.containerd.cri.v1.runtime']
    enable_criu = false
    cdi_spec_dirs = []
    # Root here may lack CAP_SYS_RESOURCE: runc could not lower the
    # sandbox's oom_score_adj, and every Pod would fail to start.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '$(command -v runc)'
          Root = '$B/containerd/runc'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['$B/cni/bin']
      conf_dir = '$B/cni/net.d'
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
  [plugins.'io.containerd.internal.v1.opt']
    path = '$B/containerd/opt'
  [plugins.'io.containerd.transfer.v1.local']
    config_path = '$B/containerd/certs.d'
EOF
	local p
	for p in bridge host-local loopback portmap; do ln -sfn "/usr/lib/cni/$p" "$B/cni/bin/$p"; done
	cat >"$B/cni/net.d/10-ocisync.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "ocisync",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$B/cni/ipam",
              "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODEIP"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
	# Pods get no resolver: nothing outside the namespace is reachable.
	echo "nameserver 127.0.0.1" >"$B/resolv.conf"
	cat >"$B/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP
containerRuntimeEndpoint: unix://$SOCK/containerd.sock
podLogsDir: $B/pod-logs
address: $NODEIP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $STATE/pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: $B/resolv.conf
failSwapOn: false
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
nodeStatusReportFrequency: 10s
syncFrequency: 10s
fileCheckFrequency: 10s
EOF
}

push_images() {
	local dir=${CLUSTER_IMAGES:-}
	[ -n "$dir" ] || die "CLUSTER_IMAGES is not set: it names the folder of image layouts (pause/ at least); make cluster-up sets it"
	[ -f "$dir/pause/index.json" ] || die "no OCI layout $dir/pause (the Pod sandbox image): run make cluster-images"
	local layout repo tag
	for layout in "$dir"/*/; do
		layout=${layout%/}
		[ -f "$layout/index.json" ] || continue
		repo=${layout##*/}
		tag=$(sed -n 's/.*"org.opencontainers.image.ref.name": *"\([^"]*\)".*/\1/p' "$layout/index.json" | head -n 1)
		[ -n "$tag" ] || die "$layout/index.json names no tag (org.opencontainers.image.ref.name)"
		inside oras cp --from-oci-layout --to-plain-http "$layout:$tag" "127.0.0.1:$REG_PORT/$repo:$tag" >>"$STATE/logs/images.log" 2>&1 ||
			die "pushing $layout to the cluster registry failed: see $STATE/logs/images.log"
	done
}

local_pvs() {
	local n=${CLUSTER_PVS:-4} i
	{
		cat <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
reclaimPolicy: Retain
EOF
		for ((i = 1; i <= n; i++)); do
			mkdir -p "$STATE/volumes/pv$i"
			cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: local-pv-$i
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local
  local: {path: $STATE/volumes/pv$i}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [$NAME]}
EOF
		done
	} | kubectl apply -f - >/dev/null
}

# preflight: what up needs, checked before anything is started or cleared.
preflight() {
	"$HACK/node-deps.sh" --check
	local b v
	for b in "${bins[@]}"; do
		v=CLUSTER_$b
		[ -n "${!v:-}" ] || die "$v is not set: make cluster-up and make test set it (see the Makefile)"
		[ -x "${!v}" ] || die "$v=${!v} is not an executable: run make cluster-tools"
	done
	mkdir -p "$STATE"/{run,logs,bin}
	local f
	for f in "$STATE"/run/*.pid; do
		[ -e "$f" ] || continue
		pid_alive "$f" && die "cluster $NAME already runs from $STATE; stop it first (make cluster-down, or CLUSTER_STATE=$STATE hack/cluster.sh down)"
	done
	return 0
}

up() {
	local b v f
	# A killed run leaves processes, mounts or the namespace behind: clear them.
	reap
	if [ -e "$NETNS" ] || [ -f "$STATE/run/created-dirs" ] || awk -v b="$STATE/" 'index($5, b) == 1' /proc/self/mountinfo | grep -q .; then
		say "clearing what an earlier run left in $STATE"
		down
	fi
	for d in /var/lib/kubelet /var/lib/cni /var/log/containers; do
		[ -e $d ] || echo $d >>"$STATE/run/created-dirs"
	done
	if [ -n "${CLUSTER_OWNER_PID:-}" ]; then
		alive "$CLUSTER_OWNER_PID" || die "CLUSTER_OWNER_PID $CLUSTER_OWNER_PID does not run"
		record_pid "$STATE/run/owner" "$CLUSTER_OWNER_PID"
		[ "${CLUSTER_TEMPORARY:-}" = 1 ] && touch "$STATE/run/temporary"
		mkdir -p "$REAP_DIR"
		ln -sfn "$STATE" "$REAP_DIR/$NAME"
	fi
	# The binaries under fixed names (containerd finds its shim on PATH).
	for b in "${bins[@]}"; do
		v=CLUSTER_$b
		local short
		short=$(echo "$b" | tr 'A-Z_' 'a-z-')
		[ "$b" = CONTAINERD_SHIM ] && short=containerd-shim-runc-v2
		ln -sfn "${!v}" "$STATE/bin/$short"
	done

	# Fresh cluster state every time; the PKI and registry content are kept.
	rm -rf "$STATE"/{etcd,kubelet-root,pod-logs,containerd,cni,volumes,kubelet}
	mkdir -p "$STATE"/{etcd,kubelet-root,pod-logs,containerd,cni/net.d,cni/bin,volumes,kubelet,registry-data}
	rm -rf "$SOCK"
	mkdir -p -m 0700 "$SOCK"
	rm -f "$STATE"/logs/*.log

	ip netns add "$NAME"
	ip -n "$NAME" link set lo up
	ip -n "$NAME" link add cni0 type bridge
	ip -n "$NAME" addr add "$NODEIP/24" dev cni0
	ip -n "$NAME" link set cni0 up
	# Service IPs are rewritten by kube-proxy's rules after routing picks an
	# interface: without a route, the namespace itself (kubectl, the tests)
	# could not reach a ClusterIP. The route stays on the bridge.
	ip -n "$NAME" route add "$SERVICE_CIDR" dev cni0
	say "network namespace $NAME (node $NODEIP)"

	# The kubelet's cgroups go under a folder of this cluster's name, so that
	# two clusters do not share /kubepods and down removes exactly ours.
	local h
	for h in $(cgroup_hierarchies); do
		mkdir -p "$h$CGROUP" 2>/dev/null || continue
		if [ -f "${h}cpuset.cpus" ]; then
			cat "${h}cpuset.cpus" >"$h$CGROUP/cpuset.cpus"
			cat "${h}cpuset.mems" >"$h$CGROUP/cpuset.mems"
		fi
	done

	write_pki
	write_configs
	cat >"$STATE/kubectl" <<EOF
#!/bin/sh
# kubectl against the test cluster $NAME, run inside its network namespace.
exec nsenter --net=$NETNS $STATE/bin/kubectl --kubeconfig=$STATE/pki/admin.kubeconfig "\$@"
EOF
	cat >"$STATE/enter" <<EOF
#!/bin/sh
# Runs a command inside the test cluster's network namespace, with KUBECONFIG set.
KUBECONFIG=$STATE/pki/admin.kubeconfig exec nsenter --net=$NETNS "\$@"
EOF
	chmod +x "$STATE/kubectl" "$STATE/enter"
	cp "$STATE/pki/admin.kubeconfig" "$STATE/kubeconfig"

	if [ -n "${CLUSTER_OWNER_PID:-}" ]; then
		# The watchdog: its own session, so that killing the test's process
		# group does not take it along before it has cleaned up.
		setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" down' watchdog \
			"$CLUSTER_OWNER_PID" "$0" >"$STATE/logs/watchdog.log" 2>&1 </dev/null &
		record_pid "$STATE/run/watchdog.pid" $!
	fi

	local P=$STATE/pki
	start registry registry serve "$STATE/registry.yml"
	start etcd etcd --name "$NAME" --data-dir "$STATE/etcd" --listen-client-urls http://127.0.0.1:2379 \
		--advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
		--initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster "$NAME=http://127.0.0.1:2380" \
		--unsafe-no-fsync --quota-backend-bytes 1073741824 --log-level warn
	start containerd containerd --config "$STATE/containerd/config.toml"
	waitfor registry 20 inside curl -sf "http://127.0.0.1:$REG_PORT/v2/"
	push_images
	say "images pushed to $NODEIP:$REG_PORT"
	waitfor etcd 30 inside curl -sf http://127.0.0.1:2379/health
	start apiserver kube-apiserver --etcd-servers=http://127.0.0.1:2379 --bind-address="$NODEIP" \
		--advertise-address="$NODEIP" --secure-port=6443 --service-cluster-ip-range="$SERVICE_CIDR" \
		--client-ca-file="$P/ca.crt" --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
		--kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key" \
		--kubelet-preferred-address-types=InternalIP \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
		--authorization-mode=Node,RBAC --allow-privileged=true --enable-priority-and-fairness=false \
		--profiling=false --cert-dir="$P/apiserver-certdir"
	waitfor containerd 30 test -S "$SOCK/containerd.sock"
	waitfor kube-apiserver 90 inside curl -sf --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key" "https://$NODEIP:6443/readyz"
	say "API server ready"

	start controller-manager kube-controller-manager --kubeconfig="$P/controller-manager.kubeconfig" \
		--authentication-kubeconfig="$P/controller-manager.kubeconfig" --authorization-kubeconfig="$P/controller-manager.kubeconfig" \
		--bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
		--service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
		--cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" --allocate-node-cidrs=false
	start scheduler kube-scheduler --kubeconfig="$P/scheduler.kubeconfig" \
		--authentication-kubeconfig="$P/scheduler.kubeconfig" --authorization-kubeconfig="$P/scheduler.kubeconfig" \
		--bind-address=127.0.0.1 --leader-elect=false
	start kubelet kubelet --config="$STATE/kubelet/config.yaml" --kubeconfig="$P/kubelet.kubeconfig" \
		--root-dir="$STATE/kubelet-root" --cert-dir="$STATE/kubelet-root/pki" --hostname-override="$NAME" --node-ip="$NODEIP" --v=1
	start kube-proxy kube-proxy --kubeconfig="$P/kube-proxy.kubeconfig" --hostname-override="$NAME" \
		--proxy-mode=iptables --cluster-cidr="$POD_CIDR" --conntrack-max-per-core=0 \
		--conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 \
		--metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256

	kubectl() { "$STATE/kubectl" "$@"; }
	waitfor "node $NAME to register" 90 kubectl get node "$NAME"
	kubectl wait --for=condition=Ready "node/$NAME" --timeout=90s >/dev/null || {
		waitfor "node $NAME Ready" 1 false
		die "node $NAME did not become Ready"
	}
	waitfor "the default ServiceAccount" 60 kubectl -n default get serviceaccount default
	waitfor "kube-proxy" 60 inside curl -sf http://127.0.0.1:10256/healthz
	local_pvs
	say "up: kubectl is $STATE/kubectl, kubeconfig $STATE/kubeconfig (used inside the namespace: $STATE/enter CMD)"
}

case $cmd in
up)
	preflight
	# A failed start leaves nothing running. errexit is off in an if
	# condition, even in a subshell, so the status is taken this way.
	set +e
	(
		set -e
		up
	)
	rc=$?
	set -e
	if [ $rc != 0 ]; then
		if [ -f "$STATE/run/temporary" ]; then
			say "start failed; stopping what was started"
		else
			say "start failed; stopping what was started (logs stay in $STATE/logs)"
		fi
		down || true
		exit 1
	fi
	;;
down) down ;;
reap) reap ;;
status)
	for f in "$STATE"/run/{apiserver,kubelet}.pid; do pid_alive "$f" || exit 1; done
	;;
*)
	echo "usage: CLUSTER_STATE=DIR $0 up|down|status|reap" >&2
	exit 2
	;;
esac
