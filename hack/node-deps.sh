#!/usr/bin/env bash
# Checks what the one-node test cluster (hack/cluster.sh) needs from the host
# and installs the Debian packages it lacks.
#
#   hack/node-deps.sh          check, and install missing packages (root)
#   hack/node-deps.sh --check  only check; print one line naming what is missing
#
# The node runs real containers in a network namespace of its own, so it
# needs root (namespaces, mounts, cgroups), the cgroup v1 or v2 hierarchy,
# and these programs: runc (Debian's 1.1 works: see restrict_oom_score_adj
# in hack/cluster.sh), the CNI bridge/host-local/loopback/portmap plugins,
# iptables and conntrack for kube-proxy, nsenter and ip to enter and build
# the namespace, openssl for the cluster's certificates.
set -euo pipefail

check_only=false
[ "${1:-}" = --check ] && check_only=true

# One line, naming what is missing and what to do; the e2e suite shows it
# as its failure message.
die() {
	echo "hack/node-deps.sh: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "the test cluster needs root (network namespaces, mounts, cgroups); run make test as root"
[ -d /sys/fs/cgroup ] || die "no /sys/fs/cgroup: the kubelet needs a cgroup hierarchy"

# program -> Debian package
declare -A packages=(
	[runc]=runc
	[iptables]=iptables
	[conntrack]=conntrack
	[nsenter]=util-linux
	[ip]=iproute2
	[openssl]=openssl
)
missing=()
for prog in "${!packages[@]}"; do
	command -v "$prog" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$prog" >/dev/null 2>&1 || missing+=("${packages[$prog]}")
done
for plugin in bridge host-local loopback portmap; do
	[ -x /usr/lib/cni/$plugin ] || { missing+=(containernetworking-plugins); break; }
done

# Checked once ip is there: installing iproute2 may be what makes it work.
check_netns() {
	ip netns list >/dev/null 2>&1 || die "cannot list network namespaces (ip netns list failed): the test cluster runs in one of its own"
}

if [ ${#missing[@]} -eq 0 ]; then
	check_netns
	exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if $check_only; then
	die "missing Debian packages for the test cluster: ${missing[*]} (run make cluster-tools, or apt-get install ${missing[*]})"
fi
command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them: install them by hand"
echo "hack/node-deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp "${TMPDIR:-/tmp}/ocisync-node-deps.XXXXXX")
trap 'rm -f "$log"' EXIT
# A package list may be missing on a fresh machine: update once, then install.
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
	apt-get update -q >>"$log" 2>&1 || true
	apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1 || {
		cat "$log" >&2
		die "apt-get install ${missing[*]} failed (output above)"
	}
fi
check_netns
