#!/usr/bin/env bash
# The real single-node Kubernetes test cluster (the measured facts behind it: the shared design
# notes, design/test-cluster.md).
#
#   scripts/cluster.sh build   build kube-apiserver, kubelet, kubectl, kube-controller-manager and
#                              kube-scheduler of k8s.io/kubernetes (pinned in tools/kube/go.mod)
#                              into $DOPPEL_KUBE_CACHE/<version>/bin, only when the version changed
#   scripts/cluster.sh up      install the Debian packages, start etcd, the control plane,
#                              containerd and kubelet; wait until the node is Ready
#   scripts/cluster.sh down    stop and remove everything `up` made (also what a killed `up` left)
#
# Everything runs on this machine and stays on it: the API server listens on 127.0.0.1:6443, the
# node IP 10.88.0.1/24 is on the bridge dpl-node0 made here, pods get 10.88.1.0/24 on the CNI
# bridge dpl-cni0 without default route and without masquerade. State lives in /run/doppel-cluster
# (pids, certs, configs, logs); kubelet and containerd data in /var/lib/doppel-cluster.
# The admin kubeconfig is /run/doppel-cluster/admin.kubeconfig; kubectl is in the cache's bin/.
# Run as root: sudo make cluster-up.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH LANG=C

say() { printf '==> [%3ds] %s\n' "$SECONDS" "$*"; }
die() {
  echo "cluster: $*" >&2
  exit 1
}

version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' tools/kube/go.mod)
[[ -n $version ]] || die "no k8s.io/kubernetes requirement in tools/kube/go.mod"
cache=${DOPPEL_KUBE_CACHE:-/var/cache/doppel-kube}
bin=$cache/$version/bin
commands=(kube-apiserver kubelet kubectl kube-controller-manager kube-scheduler)

# ---------------------------------------------------------------------------------------------
# build: static binaries reporting $version, rebuilt only when the stamp names another version.
build() {
  local stamp=$cache/$version/stamp
  if [[ -f $stamp && $(cat "$stamp") == "$version" ]]; then
    local ok=1 c
    for c in "${commands[@]}"; do [[ -x $bin/$c ]] || ok=0; done
    if ((ok)); then
      echo "cluster: Kubernetes $version binaries present in $bin"
      return
    fi
  fi
  command -v go >/dev/null || die "the go command is not on PATH"
  local v=${version#v} pkg=k8s.io/component-base/version cpkg=k8s.io/client-go/pkg/version
  local major=${v%%.*} rest=${v#*.}
  local minor=${rest%%.*}
  local date ldflags="-s -w" p
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for p in $pkg $cpkg; do
    ldflags+=" -X $p.gitVersion=$version -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  mkdir -p "$bin"
  rm -f "$stamp"
  say "building Kubernetes $version (${commands[*]}) into $bin; about 6 minutes on 2 cores"
  for c in "${commands[@]}"; do
    say "go build $c"
    CGO_ENABLED=0 go build -C tools/kube -trimpath -ldflags "$ldflags" -o "$bin/$c.tmp" "k8s.io/kubernetes/cmd/$c"
    mv "$bin/$c.tmp" "$bin/$c"
  done
  echo "$version" >"$stamp"
  "$bin/kubectl" version --client
}

# ---------------------------------------------------------------------------------------------
# Layout of a running cluster.
run=/run/doppel-cluster       # pids, pki, configs, logs, containerd state and socket
data=/var/lib/doppel-cluster  # etcd, containerd root, kubelet root, host-local IPAM
node=doppel-node
node_bridge=dpl-node0 node_cidr=10.88.0.1/24 node_ip=10.88.0.1
pod_bridge=dpl-cni0 pod_subnet=10.88.1.0/24 cni_net=dpl-pods
service_range=10.96.0.0/24 service_ip=10.96.0.1
etcd_port=12379 etcd_peer_port=12380
sock=$run/containerd/containerd.sock
pause_image=doppel.local/pause:1
kubeconfig=$run/admin.kubeconfig
packages=(etcd-server containerd runc containernetworking-plugins iptables openssl curl)

# install_packages installs the Debian packages that are missing. Package scripts must not start
# services (Debian's etcd would listen on :2379): a policy-rc.d that exits 101 blocks them.
install_packages() {
  local missing=() p
  for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
      missing+=("$p")
    fi
  done
  ((${#missing[@]} > 0)) || return 0
  say "installing ${missing[*]}"
  local policy=/usr/sbin/policy-rc.d
  [[ -e $policy ]] && die "$policy exists already; it is not ours to replace"
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  made_policy=1 # the EXIT trap removes it if apt-get fails or the script is interrupted
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f "$policy"
  made_policy=0
}
made_policy=0

# Processes: started in their own session, recorded as <pid> <start time> in $run/pids/<name>,
# so that `down` ends exactly them, also after the script that started them was killed.
starttime() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '$1 != "Z" {print $20}'; } # empty once gone or a zombie

start() {
  local name=$1
  shift
  setsid "$@" </dev/null >"$run/logs/$name.log" 2>&1 9>&- & # 9: the lock, not theirs to hold
  local pid=$!
  echo "$pid $(starttime "$pid")" >"$run/pids/$name"
}

alive() { # alive NAME: the recorded process still runs
  local f=$run/pids/$1 pid st
  [[ -f $f ]] || return 1
  read -r pid st <"$f"
  [[ -n $st && $(starttime "$pid") == "$st" ]]
}

stop() { # stop NAME [SECONDS]: SIGTERM, then SIGKILL after SECONDS (default 10)
  local name=$1 wait=${2:-10} f=$run/pids/$1 pid st i
  [[ -f $f ]] || return 0
  read -r pid st <"$f"
  if [[ -n $st && $(starttime "$pid") == "$st" ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < wait * 10; i++)); do
      [[ $(starttime "$pid") == "$st" ]] || break
      sleep 0.1
    done
    if [[ $(starttime "$pid") == "$st" ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$f"
}

wait_for() { # wait_for SECONDS WHAT COMMAND...: retry COMMAND until it succeeds
  local limit=$1 what=$2 i
  shift 2
  for ((i = 0; i < limit * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  for f in "$run"/logs/*.log; do
    echo "--- tail of $f" >&2
    tail -n 15 "$f" >&2
  done
  die "$what not ready after ${limit}s (logs in $run/logs)"
}

kubectl() { "$bin/kubectl" --kubeconfig "$kubeconfig" --cache-dir "$run/kubectl-cache" "$@"; }

# ---------------------------------------------------------------------------------------------
# down: remove everything up made, in an order that lets kubelet tear pods down itself when it
# can, then force what is left: processes, cgroups, mounts, network namespaces, links, iptables
# chains, files; and restore net.ipv4.ip_forward.
down() {
  [[ -d $run || -d $data ]] || { echo "cluster: nothing to remove"; return 0; }
  say "removing the test cluster"
  stop kube-controller-manager 5
  stop kube-scheduler 5
  if alive kube-apiserver && alive kubelet && [[ -f $kubeconfig ]]; then
    # kubelet stops each sandbox (CNI DEL removes its veth and network namespace).
    kubectl delete pods --all --all-namespaces --force --grace-period=0 --wait=false >/dev/null 2>&1 || true
    local i
    for ((i = 0; i < 100; i++)); do
      [[ -z $(new_netns) ]] && break
      sleep 0.2
    done
  fi
  stop kubelet 10
  kill_cgroup_procs
  kill_shims
  stop containerd 10
  stop kube-apiserver 10
  stop etcd 10
  unmount_under "$data"
  unmount_under "$run"
  local ns path
  for ns in $(new_netns); do
    umount "/run/netns/$ns" 2>/dev/null || umount -l "/run/netns/$ns" 2>/dev/null || true
    rm -f "/run/netns/$ns"
  done
  local l
  for l in $(ip -o link show master "$pod_bridge" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$l" 2>/dev/null || true
  done
  ip link del "$pod_bridge" 2>/dev/null || true
  ip link del "$node_bridge" 2>/dev/null || true
  remove_iptables_chains
  remove_cgroups
  local f id
  for f in /var/lib/cni/results/"$cni_net"-*; do # the CNI library's cache of our pods' results
    [[ -e $f ]] || continue
    id=${f#/var/lib/cni/results/"$cni_net"-}
    id=${id%-*}
    rm -f "$f" "/var/lib/cni/results/cni-loopback-$id-lo"
  done
  if [[ -f $run/made-paths ]]; then
    while read -r path; do rm -rf "$path"; done <"$run/made-paths"
  fi
  if [[ -f $run/ip_forward ]]; then
    sysctl -qw net.ipv4.ip_forward="$(cat "$run/ip_forward")"
  fi
  rm -rf "$data" "$run"
  say "removed"
}

# new_netns: the network namespaces in /run/netns that were not there when up started.
new_netns() {
  [[ -f $run/netns.before ]] || return 0
  local ns
  for ns in $(ls /run/netns 2>/dev/null); do
    grep -qx "$ns" "$run/netns.before" || echo "$ns"
  done
}

# kill_cgroup_procs: SIGKILL the pod processes kubelet left (all of them live under kubepods).
kill_cgroup_procs() {
  local f pid
  for f in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d $f ]] || continue
    for pid in $(find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null || true
    done
  done
}

# kill_shims: the containerd-shim-runc-v2 processes of our containerd (found by its socket).
kill_shims() {
  local pid
  for pid in $(pgrep -f -- "containerd-shim.* -address $sock( |$)" || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
}

unmount_under() { # unmount every mount at or below $1, deepest first
  local dir=$1 m
  for m in $(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

remove_cgroups() { # rmdir kubepods trees, deepest first
  local f
  for f in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d $f ]] || continue
    find "$f" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

# remove_iptables_chains: the chains kubelet makes (KUBE-*; no kube-proxy runs) that were not
# there before up.
remove_iptables_chains() {
  local cmd table chain
  for cmd in iptables ip6tables; do
    command -v $cmd >/dev/null || continue
    for table in filter nat mangle; do
      for chain in $($cmd -t $table -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
        if [[ -f $run/iptables.before ]] && grep -qx "$cmd $table $chain" "$run/iptables.before"; then continue; fi
        $cmd -t $table -S 2>/dev/null | awk -v c="$chain" '$1 == "-A" && $0 ~ ("-j " c "( |$)") {sub(/^-A/, "-D"); print}' |
          while read -r rule; do eval "$cmd -t $table $rule" 2>/dev/null || true; done
        $cmd -t $table -F "$chain" 2>/dev/null || true
        $cmd -t $table -X "$chain" 2>/dev/null || true
      done
    done
  done
}

# ---------------------------------------------------------------------------------------------
# up: a fresh cluster each time (what an earlier run left is removed first).

# pki: a CA, the API server's serving certificate, the service-account key pair; tokens for the
# admin (system:masters), the controller manager, the scheduler and the node.
make_pki() {
  local d=$run/pki
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=doppel-test-ca \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  cat >"$d/apiserver.ext" <<EOT
subjectAltName = IP:127.0.0.1, IP:$node_ip, IP:$service_ip, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage = serverAuth
EOT
  openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
    -keyout "$d/apiserver.key" -out "$d/apiserver.csr" 2>/dev/null
  openssl x509 -req -in "$d/apiserver.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 30 -extfile "$d/apiserver.ext" -out "$d/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  local admin ctrl sched kubelet
  admin=$(openssl rand -hex 16) ctrl=$(openssl rand -hex 16) sched=$(openssl rand -hex 16) kubelet=$(openssl rand -hex 16)
  cat >"$d/tokens.csv" <<EOT
$admin,admin,admin,"system:masters"
$ctrl,system:kube-controller-manager,system:kube-controller-manager
$sched,system:kube-scheduler,system:kube-scheduler
$kubelet,system:node:$node,system:node:$node,"system:nodes"
EOT
  chmod 600 "$d"/*.key "$d/tokens.csv"
  write_kubeconfig "$kubeconfig" admin "$admin"
  write_kubeconfig "$run/controller-manager.kubeconfig" system:kube-controller-manager "$ctrl"
  write_kubeconfig "$run/scheduler.kubeconfig" system:kube-scheduler "$sched"
  write_kubeconfig "$run/kubelet.kubeconfig" "system:node:$node" "$kubelet"
}

write_kubeconfig() { # write_kubeconfig FILE USER TOKEN
  cat >"$1" <<EOT
apiVersion: v1
kind: Config
clusters:
- name: doppel-test
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: $(base64 -w0 "$run/pki/ca.crt")
users:
- name: $2
  user:
    token: $3
contexts:
- name: doppel-test
  context: {cluster: doppel-test, user: $2}
current-context: doppel-test
EOT
  chmod 600 "$1"
}

# pause_image: the sandbox image, a static pause binary in a single-layer OCI archive, written
# by hand (oci-layout, index.json, blobs) and imported into containerd's k8s.io namespace.
pause_image() {
  local d=$run/pause
  mkdir -p "$d/rootfs" "$d/oci/blobs/sha256"
  CGO_ENABLED=0 go build -C tools/kube -trimpath -ldflags '-s -w' -o "$d/rootfs/pause" ./cmd/pause
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$d/rootfs" -cf "$d/layer.tar" pause
  local layer layer_size config config_size manifest manifest_size
  layer=$(sha256sum "$d/layer.tar" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$d/layer.tar")
  mv "$d/layer.tar" "$d/oci/blobs/sha256/$layer"
  printf '%s' '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"]},"rootfs":{"type":"layers","diff_ids":["sha256:'"$layer"'"]}}' >"$d/config.json"
  config=$(sha256sum "$d/config.json" | cut -d' ' -f1)
  config_size=$(stat -c %s "$d/config.json")
  mv "$d/config.json" "$d/oci/blobs/sha256/$config"
  printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$config"'","size":'"$config_size"'},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:'"$layer"'","size":'"$layer_size"'}]}' >"$d/manifest.json"
  manifest=$(sha256sum "$d/manifest.json" | cut -d' ' -f1)
  manifest_size=$(stat -c %s "$d/manifest.json")
  mv "$d/manifest.json" "$d/oci/blobs/sha256/$manifest"
  printf '%s' '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:'"$manifest"'","size":'"$manifest_size"',"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"'"$pause_image"'","org.opencontainers.image.ref.name":"1"}}]}' >"$d/oci/index.json"
  printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$d/oci/oci-layout"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$d/oci" -cf "$d/pause.tar" oci-layout index.json blobs
  ctr --address "$sock" -n k8s.io images import "$d/pause.tar" >/dev/null
}

up() {
  [[ $(uname -m) == x86_64 ]] || die "only amd64 is scripted (the pause image says amd64)"
  down
  install_packages
  build
  say "starting the test cluster"
  if ip -o addr show | grep -q ' 10\.88\.'; then die "10.88.0.0/16 is in use on this machine"; fi
  mkdir -p "$run"/{pids,logs,cni/net.d,containerd} "$data"/{etcd,kubelet,containerd,cni}
  chmod 700 "$run" "$data"
  sysctl -n net.ipv4.ip_forward >"$run/ip_forward"
  # Paths outside $run and $data that are hard-coded in kubelet (device plugin socket, container
  # log links), containerd (shim sockets), the CNI library (result cache), the controller
  # manager and util-linux: removed by down when up made them.
  local path
  for path in /var/lib/kubelet /var/log/containers /run/containerd /var/lib/cni /usr/libexec/kubernetes /run/mount; do
    [[ -e $path ]] || echo "$path"
  done >"$run/made-paths"
  ls /run/netns 2>/dev/null >"$run/netns.before" || true
  local cmd table
  for cmd in iptables ip6tables; do
    for table in filter nat mangle; do
      $cmd -t $table -S 2>/dev/null | awk -v c=$cmd -v t=$table '$1 == "-N" {print c, t, $2}'
    done
  done >"$run/iptables.before"

  ip link add "$node_bridge" type bridge
  ip addr add "$node_cidr" dev "$node_bridge"
  ip link set "$node_bridge" up

  make_pki

  start etcd etcd --name doppel --data-dir "$data/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "doppel=http://127.0.0.1:$etcd_peer_port"
  wait_for 30 etcd curl -sf "http://127.0.0.1:$etcd_port/health"

  local p=$run/pki
  start kube-apiserver "$bin/kube-apiserver" --bind-address=127.0.0.1 --secure-port=6443 \
    --advertise-address="$node_ip" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" --client-ca-file="$p/ca.crt" \
    --token-auth-file="$p/tokens.csv" --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true --kubelet-preferred-address-types=InternalIP --service-cluster-ip-range="$service_range" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key"
  wait_for 60 kube-apiserver kubectl get --raw /readyz

  start kube-controller-manager "$bin/kube-controller-manager" --kubeconfig="$run/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --flex-volume-plugin-dir="$data/volume-plugins" \
    --cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key"
  start kube-scheduler "$bin/kube-scheduler" --kubeconfig="$run/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false

  # Pods on a bridge of their own, addresses from host-local, no default route, no masquerade.
  cat >"$run/cni/net.d/10-$cni_net.conflist" <<EOT
{"cniVersion": "1.0.0", "name": "$cni_net", "plugins": [
  {"type": "bridge", "bridge": "$pod_bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$pod_subnet"}]], "dataDir": "$data/cni/networks"}}
]}
EOT
  cat >"$run/containerd.toml" <<EOT
version = 2
root = "$data/containerd"
state = "$run/containerd/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$data/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$run/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$run/cni/net.d"
EOT
  start containerd containerd --config "$run/containerd.toml"
  wait_for 30 containerd ctr --address "$sock" version
  pause_image

  cat >"$run/kubelet.yaml" <<EOT
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$sock
address: $node_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
resolvConf: ""
clusterDomain: cluster.local
failSwapOn: false
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 8760h
podLogsDir: $data/pod-logs
volumePluginDir: $data/volume-plugins
EOT
  start kubelet "$bin/kubelet" --config="$run/kubelet.yaml" --kubeconfig="$run/kubelet.kubeconfig" \
    --root-dir="$data/kubelet" --cert-dir="$run/pki/kubelet" --hostname-override="$node" --node-ip="$node_ip"
  wait_for 60 "node $node" kubectl get node "$node"
  wait_for 60 "node $node" kubectl wait --for=condition=Ready "node/$node" --timeout=1s
  # Pods are rejected until the default service account exists.
  wait_for 60 "service account default" kubectl -n default get serviceaccount default
  say "node $node is Ready; kubeconfig $kubeconfig; kubectl $bin/kubectl"
}

case ${1:-} in
build) build ;;
up | down)
  [[ $(id -u) -eq 0 ]] || die "$1 needs root (bridges, mounts, containerd, kubelet); run: sudo make cluster-$1"
  mkdir -p "${run%/*}"
  exec 9>"$run.lock"
  flock -n 9 || die "another cluster.sh up or down runs (it holds $run.lock)"
  if [[ $1 == up ]]; then
    # A failed up removes what it made, unless DOPPEL_CLUSTER_KEEP=1 keeps it for a look at the logs.
    trap 'rc=$?; if ((made_policy)); then rm -f /usr/sbin/policy-rc.d; fi; if ((rc != 0)) && [[ ${DOPPEL_CLUSTER_KEEP:-} != 1 ]]; then down; fi' EXIT
    up
  else
    down
    rm -f "$run.lock"
  fi
  ;;
*) die "usage: $0 build|up|down" ;;
esac
