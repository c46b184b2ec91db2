#!/usr/bin/env bash
# The real single-node Kubernetes test cluster (the measured facts behind it: the shared design
# notes, design/test-cluster.md).
#
#   scripts/cluster.sh build   build kube-apiserver, kubelet, kubectl, kube-controller-manager,
#                              kube-scheduler and kube-proxy of k8s.io/kubernetes (pinned in
#                              tools/kube/go.mod) and CoreDNS (pinned in tools/kube/coredns/go.mod)
#                              into $DOPPEL_KUBE_CACHE/<version>/bin: all of them when the version
#                              changed, else only the missing ones (and CoreDNS when its changed)
#   scripts/cluster.sh up      install the Debian packages, start etcd, the control plane,
#                              containerd, kubelet and kube-proxy; build and import the images
#                              (pause, doppel.local/nginx:1, doppel.local/client:1, CoreDNS); run
#                              CoreDNS behind the kube-dns Service; wait until the node is Ready and
#                              CoreDNS answers
#   scripts/cluster.sh down    stop and remove everything `up` made (also what a killed `up` left)
#
# Everything runs on this machine and stays on it: the node IP 10.88.0.1/24 is on the bridge
# dpl-node0 made here, and the API server listens on 10.88.0.1:6443 only (every kubeconfig points
# there), so pods (through the kubernetes Service) and network namespaces routed to 10.88.0.1
# reach it. Pods get 10.88.1.0/24 on the CNI bridge dpl-cni0 with routes to the service range
# 10.96.0.0/24 and to 10.88.0.1 through the bridge's gateway, no default route and no masquerade.
# kube-proxy (nftables mode, a host process) serves the ClusterIPs to pods and to the host (the
# host routes 10.96.0.0/24 to dpl-node0, so nothing for a ClusterIP leaves the machine), CoreDNS
# answers for cluster.local and the reverse zones at 10.96.0.10 and forwards nothing.
# State lives in /run/doppel-cluster (pids, certs, configs, images, logs); kubelet and containerd
# data in /var/lib/doppel-cluster. The admin kubeconfig is /run/doppel-cluster/admin.kubeconfig;
# kubectl is in the cache's bin/. Test pods use the images doppel.local/nginx:1 (Debian's nginx:
# port 80, servers from /etc/nginx/conf.d, pages from /usr/share/nginx/html, access log on stdout)
# and doppel.local/client:1 (tools/kube/cmd/client: GET -url in a loop, one line per response)
# with imagePullPolicy Never or IfNotPresent.
# Run as root: sudo make cluster-up.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH LANG=C

umask 022 # the images' files and directories get the same modes on every machine

say() { printf '==> [%3ds] %s\n' "$SECONDS" "$*"; }
die() {
  echo "cluster: $*" >&2
  exit 1
}

version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' tools/kube/go.mod)
[[ -n $version ]] || die "no k8s.io/kubernetes requirement in tools/kube/go.mod"
cache=${DOPPEL_KUBE_CACHE:-/var/cache/doppel-kube}
bin=$cache/$version/bin
commands=(kube-apiserver kubelet kubectl kube-controller-manager kube-scheduler kube-proxy)
coredns_version=$(awk '$1 == "require" && $2 == "github.com/coredns/coredns" {print $3}' tools/kube/coredns/go.mod)
[[ -n $coredns_version ]] || die "no github.com/coredns/coredns requirement in tools/kube/coredns/go.mod"

# ---------------------------------------------------------------------------------------------
# build: static binaries reporting $version, all rebuilt when the stamp names another version,
# else only those missing; CoreDNS rebuilt when it is missing or reports another version.
build() {
  local stamp=$cache/$version/stamp missing=() c
  if [[ -f $stamp && $(cat "$stamp") == "$version" ]]; then
    for c in "${commands[@]}"; do [[ -x $bin/$c ]] || missing+=("$c"); done
  else
    missing=("${commands[@]}")
  fi
  local coredns=0
  [[ -x $bin/coredns && $("$bin/coredns" -version 2>/dev/null | head -n 1) == "CoreDNS-${coredns_version#v}" ]] || coredns=1
  if ((${#missing[@]} == 0 && coredns == 0)); then
    echo "cluster: Kubernetes $version and CoreDNS $coredns_version binaries present in $bin"
    return
  fi
  command -v go >/dev/null || die "the go command is not on PATH"
  mkdir -p "$bin"
  local t
  if ((${#missing[@]} > 0)); then
    local v=${version#v} pkg=k8s.io/component-base/version cpkg=k8s.io/client-go/pkg/version
    local major=${v%%.*} rest=${v#*.}
    local minor=${rest%%.*}
    local date ldflags="-s -w" p
    date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    for p in $pkg $cpkg; do
      ldflags+=" -X $p.gitVersion=$version -X $p.gitMajor=$major -X $p.gitMinor=$minor"
      ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
    done
    ((${#missing[@]} < ${#commands[@]})) || rm -f "$stamp"
    say "building Kubernetes $version (${missing[*]}) into $bin; about a minute each on 2 cores"
    for c in "${missing[@]}"; do
      t=$SECONDS
      say "go build $c"
      CGO_ENABLED=0 go build -C tools/kube -trimpath -ldflags "$ldflags" -o "$bin/$c.tmp" "k8s.io/kubernetes/cmd/$c"
      mv "$bin/$c.tmp" "$bin/$c"
      say "built $c in $((SECONDS - t))s"
    done
    echo "$version" >"$stamp"
    "$bin/kubectl" version --client
  fi
  if ((coredns)); then
    t=$SECONDS
    say "go build CoreDNS $coredns_version (tools/kube/coredns) into $bin; about 2 minutes on 2 cores"
    CGO_ENABLED=0 go build -C tools/kube/coredns -trimpath -ldflags "-s -w" -o "$bin/coredns.tmp" github.com/coredns/coredns
    mv "$bin/coredns.tmp" "$bin/coredns"
    say "built CoreDNS in $((SECONDS - t))s: $("$bin/coredns" -version | head -n 1)"
  fi
}

# ---------------------------------------------------------------------------------------------
# Layout of a running cluster.
run=/run/doppel-cluster       # pids, pki, configs, logs, containerd state and socket
data=/var/lib/doppel-cluster  # etcd, containerd root, kubelet root, host-local IPAM
node=doppel-node
node_bridge=dpl-node0 node_cidr=10.88.0.1/24 node_ip=10.88.0.1
pod_bridge=dpl-cni0 pod_subnet=10.88.1.0/24 cni_net=dpl-pods
service_range=10.96.0.0/24 service_ip=10.96.0.1 dns_ip=10.96.0.10
api=https://$node_ip:6443
etcd_port=12379 etcd_peer_port=12380
sock=$run/containerd/containerd.sock
pause_image=doppel.local/pause:1 nginx_image=doppel.local/nginx:1 client_image=doppel.local/client:1
coredns_image=doppel.local/coredns:1
kubeconfig=$run/admin.kubeconfig
packages=(etcd-server containerd runc containernetworking-plugins iptables nftables nginx openssl curl)
# The sysctls that up's components change (the CNI bridge plugin: ip_forward; kube-proxy: the
# bridge and conntrack ones, route_localnet; kubelet: vm and kernel ones): saved by up, restored
# by down.
sysctls=(net.ipv4.ip_forward net.ipv4.conf.all.route_localnet
  net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait net.netfilter.nf_conntrack_tcp_be_liberal
  net.netfilter.nf_conntrack_udp_timeout net.netfilter.nf_conntrack_udp_timeout_stream
  vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

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
# shellcheck disable=SC2034 # read by the EXIT trap
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
# can, then force what is left: processes, cgroups, mounts, network namespaces, links (and so the
# host route to the service range), kube-proxy's nftables tables, iptables chains, files; and
# restore the sysctls.
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
  stop kube-proxy 10
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
  remove_kube_proxy_rules
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
  local key value
  if [[ -f $run/sysctls ]]; then
    while read -r key value; do sysctl -qw "$key=$value" || true; done <"$run/sysctls"
  elif [[ -f $run/ip_forward ]]; then # written by an older up
    sysctl -qw net.ipv4.ip_forward="$(cat "$run/ip_forward")"
  fi
  rm -rf "$data" "$run"
  say "removed"
}

# new_netns: the network namespaces in /run/netns that were not there when up started.
new_netns() {
  [[ -f $run/netns.before ]] || return 0
  local ns
  for ns in /run/netns/*; do
    [[ -e $ns ]] || continue
    grep -qx "${ns##*/}" "$run/netns.before" || echo "${ns##*/}"
  done
}

# kill_cgroup_procs: SIGKILL the pod processes kubelet left (all of them live under kubepods).
kill_cgroup_procs() {
  local f pid
  for f in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d $f ]] || continue
    while read -r pid; do
      kill -KILL "$pid" 2>/dev/null || true
    done < <(find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null)
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
  awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
}

remove_cgroups() { # rmdir kubepods trees, deepest first
  local f
  for f in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d $f ]] || continue
    find "$f" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

# remove_kube_proxy_rules: kube-proxy --cleanup removes the rules of each of its modes (in
# nftables mode its tables ip and ip6 kube-proxy); nft removes the tables if that failed. Only
# when up got as far as writing kube-proxy's config (up refuses to start when the tables exist).
remove_kube_proxy_rules() {
  [[ -f $run/kube-proxy.yaml ]] || return 0
  if [[ -x $bin/kube-proxy ]]; then
    "$bin/kube-proxy" --cleanup >"$run/logs/kube-proxy-cleanup.log" 2>&1 || true
  fi
  local family
  for family in ip ip6; do
    if nft list table $family kube-proxy >/dev/null 2>&1; then nft delete table $family kube-proxy || true; fi
  done
}

# remove_iptables_chains: the chains kubelet makes (KUBE-*; kube-proxy's own, if an iptables mode
# run left any) that were not there before up.
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
# admin (system:masters), the controller manager, the scheduler, the node and kube-proxy.
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
  local admin ctrl sched kubelet proxy
  admin=$(openssl rand -hex 16) ctrl=$(openssl rand -hex 16) sched=$(openssl rand -hex 16) kubelet=$(openssl rand -hex 16)
  proxy=$(openssl rand -hex 16)
  cat >"$d/tokens.csv" <<EOT
$admin,admin,admin,"system:masters"
$ctrl,system:kube-controller-manager,system:kube-controller-manager
$sched,system:kube-scheduler,system:kube-scheduler
$kubelet,system:node:$node,system:node:$node,"system:nodes"
$proxy,system:kube-proxy,system:kube-proxy
EOT
  chmod 600 "$d"/*.key "$d/tokens.csv"
  write_kubeconfig "$kubeconfig" admin "$admin"
  write_kubeconfig "$run/controller-manager.kubeconfig" system:kube-controller-manager "$ctrl"
  write_kubeconfig "$run/scheduler.kubeconfig" system:kube-scheduler "$sched"
  write_kubeconfig "$run/kubelet.kubeconfig" "system:node:$node" "$kubelet"
  write_kubeconfig "$run/kube-proxy.kubeconfig" system:kube-proxy "$proxy"
}

write_kubeconfig() { # write_kubeconfig FILE USER TOKEN
  cat >"$1" <<EOT
apiVersion: v1
kind: Config
clusters:
- name: doppel-test
  cluster:
    server: $api
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

# oci_image REF DIR CONFIG: pack DIR/rootfs into a single-layer OCI archive DIR/image.tar named
# REF, written by hand (oci-layout, index.json, blobs), CONFIG being the image config's "config"
# object (JSON); import it into containerd's k8s.io namespace. The archive depends only on the
# files: names sorted, owner 0, mtime 0, no creation date.
oci_image() {
  local ref=$1 d=$2 config_object=$3
  mkdir -p "$d/oci/blobs/sha256"
  # shellcheck disable=SC2046 # the top-level names of the rootfs, none with a space
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$d/rootfs" -cf "$d/layer.tar" $(ls -A "$d/rootfs")
  local layer layer_size config config_size manifest manifest_size
  layer=$(sha256sum "$d/layer.tar" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$d/layer.tar")
  mv "$d/layer.tar" "$d/oci/blobs/sha256/$layer"
  printf '%s' '{"architecture":"amd64","os":"linux","config":'"$config_object"',"rootfs":{"type":"layers","diff_ids":["sha256:'"$layer"'"]}}' >"$d/config.json"
  config=$(sha256sum "$d/config.json" | cut -d' ' -f1)
  config_size=$(stat -c %s "$d/config.json")
  mv "$d/config.json" "$d/oci/blobs/sha256/$config"
  printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$config"'","size":'"$config_size"'},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:'"$layer"'","size":'"$layer_size"'}]}' >"$d/manifest.json"
  manifest=$(sha256sum "$d/manifest.json" | cut -d' ' -f1)
  manifest_size=$(stat -c %s "$d/manifest.json")
  mv "$d/manifest.json" "$d/oci/blobs/sha256/$manifest"
  printf '%s' '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:'"$manifest"'","size":'"$manifest_size"',"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"'"$ref"'","org.opencontainers.image.ref.name":"'"${ref##*:}"'"}}]}' >"$d/oci/index.json"
  printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$d/oci/oci-layout"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$d/oci" -cf "$d/image.tar" oci-layout index.json blobs
  rm -rf "$d/oci"
  ctr --address "$sock" -n k8s.io images import "$d/image.tar" >/dev/null
}

# images: build the cluster's images in $run/images/<name> and import them: the sandbox image (a
# static pause binary), the test workloads nginx and client, and CoreDNS.
images() {
  local d=$run/images
  mkdir -p "$d"/{pause,client,coredns}/rootfs
  CGO_ENABLED=0 go build -C tools/kube -trimpath -buildvcs=false -ldflags '-s -w' -o "$d/pause/rootfs/pause" ./cmd/pause
  oci_image "$pause_image" "$d/pause" '{"Entrypoint":["/pause"]}'
  CGO_ENABLED=0 go build -C tools/kube -trimpath -buildvcs=false -ldflags '-s -w' -o "$d/client/rootfs/client" ./cmd/client
  oci_image "$client_image" "$d/client" '{"Entrypoint":["/client"]}'
  install -m 755 "$bin/coredns" "$d/coredns/rootfs/coredns"
  oci_image "$coredns_image" "$d/coredns" '{"Entrypoint":["/coredns"],"Cmd":["-conf","/etc/coredns/Corefile"],"ExposedPorts":{"53/tcp":{},"53/udp":{},"9153/tcp":{}}}'
  nginx_rootfs "$d/nginx/rootfs"
  oci_image "$nginx_image" "$d/nginx" '{"Entrypoint":["/usr/sbin/nginx"],"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],"ExposedPorts":{"80/tcp":{}},"StopSignal":"SIGQUIT"}'
}

# nginx_rootfs DIR: Debian's nginx binary, exactly the shared libraries ldd lists and the dynamic
# loader, the users root, www-data and nobody, mime.types, the empty directories nginx writes to,
# an nginx.conf that runs in the foreground and logs to stdout and stderr, and the default server
# (port 80, /usr/share/nginx/html) in conf.d/default.conf, where a ConfigMap mounted on conf.d
# replaces it.
nginx_rootfs() {
  local r=$1 lib
  mkdir -p "$r"/{etc/nginx/conf.d,usr/share/nginx/html,var/log/nginx,run,tmp}
  mkdir -p "$r"/var/lib/nginx/{body,fastcgi,proxy,scgi,uwsgi}
  chmod 1777 "$r/tmp"
  install -D -m 755 /usr/sbin/nginx "$r/usr/sbin/nginx"
  for lib in $(ldd /usr/sbin/nginx | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    if [[ $lib == */ld-linux* ]]; then install -D -m 755 "$lib" "$r$lib"; else install -D -m 644 "$lib" "$r$lib"; fi
  done
  [[ -f $r/usr/sbin/nginx && -n $(ls "$r"/lib64/ld-linux* 2>/dev/null) ]] || die "nginx or its loader missing from $r"
  install -m 644 /etc/nginx/mime.types "$r/etc/nginx/mime.types"
  printf '%s\n' root:x:0:0:root:/root:/usr/sbin/nologin www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin \
    nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin >"$r/etc/passwd"
  printf '%s\n' root:x:0: www-data:x:33: nogroup:x:65534: >"$r/etc/group"
  cat >"$r/etc/nginx/nginx.conf" <<'EOT'
# doppel.local/nginx:1 (scripts/cluster.sh): in the foreground, errors on stderr, the access log
# on stdout; the servers come from /etc/nginx/conf.d/*.conf (default.conf: port 80).
daemon off;
master_process on;
user nobody nogroup;
worker_processes 1;
pid /run/nginx.pid;
error_log stderr notice;

events {
    worker_connections 1024;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format doppel '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"';
    access_log /dev/stdout doppel;
    sendfile on;
    keepalive_timeout 65;
    include /etc/nginx/conf.d/*.conf;
}
EOT
  cat >"$r/etc/nginx/conf.d/default.conf" <<'EOT'
server {
    listen 80 default_server;
    server_name _;
    root /usr/share/nginx/html;
    index index.html;
}
EOT
  echo "nginx in doppel test" >"$r/usr/share/nginx/html/index.html"
}

# deploy_coredns: CoreDNS as a Deployment in kube-system (its own ServiceAccount, the system:coredns
# ClusterRole) behind the kube-dns Service at $dns_ip: the kubernetes plugin for cluster.local and
# the reverse zones, no forwarder (nothing leaves the machine).
deploy_coredns() {
  kubectl apply -f - >/dev/null <<EOT
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects:
- {kind: ServiceAccount, name: coredns, namespace: kube-system}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            ttl 30
        }
        prometheus :9153
        cache 30
        reload
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      containers:
      - name: coredns
        image: $coredns_image
        imagePullPolicy: Never
        args: ["-conf", "/etc/coredns/Corefile"]
        ports:
        - {name: dns, containerPort: 53, protocol: UDP}
        - {name: dns-tcp, containerPort: 53, protocol: TCP}
        - {name: metrics, containerPort: 9153, protocol: TCP}
        livenessProbe: {httpGet: {path: /health, port: 8080}, periodSeconds: 10, failureThreshold: 5}
        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 1}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}}
spec:
  selector: {k8s-app: kube-dns}
  clusterIP: $dns_ip
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
  - {name: metrics, port: 9153, protocol: TCP}
EOT
}

up() {
  [[ $(uname -m) == x86_64 ]] || die "only amd64 is scripted (the pause image says amd64)"
  down
  install_packages
  build
  say "starting the test cluster"
  if ip -o addr show | grep -q ' 10\.88\.'; then die "10.88.0.0/16 is in use on this machine"; fi
  if [[ -n $(ip route show "$service_range") ]]; then die "the service range $service_range is routed on this machine already"; fi
  local family
  for family in ip ip6; do
    if nft list table $family kube-proxy >/dev/null 2>&1; then die "nftables table $family kube-proxy exists (another kube-proxy?)"; fi
  done
  mkdir -p "$run"/{pids,logs,cni/net.d,containerd} "$data"/{etcd,kubelet,containerd,cni}
  chmod 700 "$run" "$data"
  local key value
  for key in "${sysctls[@]}"; do
    if value=$(sysctl -n "$key" 2>/dev/null); then echo "$key $value"; fi
  done >"$run/sysctls"
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
  # The host's packets to a ClusterIP leave by the node bridge (source 10.88.0.1) until
  # kube-proxy's DNAT sends them to a pod; with no rule for an address they stay on the bridge,
  # instead of following the default route off the machine.
  ip route add "$service_range" dev "$node_bridge" src "$node_ip"

  make_pki

  start etcd etcd --name doppel --data-dir "$data/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "doppel=http://127.0.0.1:$etcd_peer_port"
  wait_for 30 etcd curl -sf "http://127.0.0.1:$etcd_port/health"

  local p=$run/pki
  start kube-apiserver "$bin/kube-apiserver" --bind-address="$node_ip" --secure-port=6443 \
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

  # Pods on a bridge of their own, addresses from host-local, no masquerade, and no default route:
  # routes to the service range and to the node IP through the bridge's gateway only.
  cat >"$run/cni/net.d/10-$cni_net.conflist" <<EOT
{"cniVersion": "1.0.0", "name": "$cni_net", "plugins": [
  {"type": "bridge", "bridge": "$pod_bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$pod_subnet", "gateway": "${pod_subnet%.*}.1"}]],
            "routes": [{"dst": "$service_range"}, {"dst": "$node_ip/32"}], "dataDir": "$data/cni/networks"}}
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
  local t=$SECONDS
  images
  say "images built and imported in $((SECONDS - t))s: $pause_image $nginx_image $client_image $coredns_image"

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
clusterDNS: [$dns_ip]
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
  say "node $node is Ready"

  # kube-proxy once the node (and so its IP) is registered; the bootstrap ClusterRoleBinding
  # system:node-proxier binds the user system:kube-proxy to the ClusterRole system:node-proxier.
  t=$SECONDS
  wait_for 30 "ClusterRoleBinding system:node-proxier" kubectl get clusterrolebinding system:node-proxier
  # bridge-nf-call-iptables: a reply from a Service's pod to a pod on the same bridge must pass
  # conntrack to get the ClusterIP back as its source (br_netfilter).
  sysctl -qw net.bridge.bridge-nf-call-iptables=1
  cat >"$run/kube-proxy.yaml" <<EOT
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {kubeconfig: $run/kube-proxy.kubeconfig}
hostnameOverride: $node
clusterCIDR: $pod_subnet
detectLocalMode: ClusterCIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [primary]
# 0: leave the machine's conntrack settings as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
EOT
  start kube-proxy "$bin/kube-proxy" --config="$run/kube-proxy.yaml"
  wait_for 60 kube-proxy curl -sf http://127.0.0.1:10256/healthz
  wait_for 30 "kube-proxy's rules" nft list table ip kube-proxy
  say "kube-proxy (nftables mode) ready in $((SECONDS - t))s"

  t=$SECONDS
  deploy_coredns
  wait_for 120 CoreDNS kubectl -n kube-system rollout status deployment/coredns --timeout=2s
  say "CoreDNS ready at $dns_ip in $((SECONDS - t))s"
  say "cluster up; kubeconfig $kubeconfig (server $api); kubectl $bin/kubectl"
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
