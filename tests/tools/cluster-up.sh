#!/usr/bin/env bash
# Starts the real one-node Kubernetes of ../shared/kube for tests/cluster_e2e.rs
# and loads the berth image into its node, as a user of a cluster with no
# registry would:
#
#   tests/tools/cluster-up.sh DIR STATIC_BERTH
#   BERTH_E2E_CLUSTER=DIR cargo test --test cluster_e2e
#   bash ../shared/kube/cluster.sh down DIR
#
# STATIC_BERTH is a statically linked berth (see .ci/run); `berth image export`
# packs it into the image berth:VERSION, which containerd names
# docker.io/library/berth:VERSION, the default image of `berth enable`.
# Needs root (the kit runs a kubelet, iptables, mounts). Any failure stops it
# with a message: the suite must not be skipped because the cluster is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

dir="${1:?usage: cluster-up.sh DIR STATIC_BERTH}"
berth="${2:?usage: cluster-up.sh DIR STATIC_BERTH}"
kit="${BERTH_KUBE_KIT:-$PWD/../shared/kube}"

if [ "$(id -u)" != 0 ]; then
    echo "cluster-up: the kit's cluster needs root (a kubelet, iptables, mounts)" >&2
    exit 1
fi
if [ ! -f "$kit/cluster.sh" ]; then
    echo "cluster-up: no kit at $kit (set BERTH_KUBE_KIT)" >&2
    exit 1
fi

# kubectl for the kit and the suite: the one install-kube-tools.sh unpacked.
export PATH="${BERTH_KUBE_TOOLS:-$PWD/target/kube-tools}:$PATH"
command -v kubectl >/dev/null || {
    echo "cluster-up: no kubectl; run tests/tools/install-kube-tools.sh" >&2
    exit 1
}

# Six volumes rather than four: the suite's Registries each bind one, and a
# deleted claim's volume is Available again only once the recycler emptied it.
# No hosts.toml for localhost:32000 at start: berth's node-config DaemonSet
# must write it (KIT_HOSTS_32000=0).
if ! KIT_PV_COUNT=6 KIT_HOSTS_32000=0 bash "$kit/cluster.sh" up "$dir" >"$dir.up.log" 2>&1; then
    tail -n 40 "$dir.up.log" >&2
    echo "cluster-up: the cluster did not start (full log: $dir.up.log)" >&2
    exit 1
fi
echo "cluster-up: $(tail -n 1 "$dir.up.log")"

image="$dir/berth-image.tar"
"$berth" image export -o "$image"
ctr --address "$dir/containerd/containerd.sock" -n k8s.io images import "$image"
echo "cluster-up: ready; run the suite with BERTH_E2E_CLUSTER=$dir"
