#!/usr/bin/env bash
# doppel's benchmarks: ratios measured side by side in one run, written to docs/BENCHMARKS.md.
#
# It builds its own topology of network namespaces (like internal/testenv):
#   cluster  the servers: iperf3 on 10.96.0.5:5201 and nginx on 10.96.0.80:80 (both on its
#            loopback), and veth-pod 10.244.1.1/24 to the pod;
#   pod      eth0 10.244.1.5/24, default route via the cluster; the pod process (sleep), the
#            target of doppel; microsocks (SOCKS5) on 192.168.77.1:1080, its veth to the peer;
#   laptop   loopback only: doppel and the measured program under it;
#   peer     a laptop-like namespace with only a veth to the pod (192.168.77.2/30, no other
#            route): the client under proxychains4, whose one path out is microsocks.
# and compares, for the same client program:
#   direct   the client inside the pod namespace (what the pod itself gets);
#   doppel   the client in the laptop under `doppel exec --target pid:<pod process>`;
#   proxy    the client in the peer namespace under proxychains4, through microsocks in the pod;
#   floor    (connloop.py only) the client in the pod under `doppel exec --no-outgoing`: what one
#            trapped call per connection costs, whatever else doppel does.
# The incoming rows add two references without doppel: nginx's stream proxy in the path of each
# connection (a relay), and tcpdump beside nginx (a packet capture).
# Measured programs run as nobody (65534) in every column: doppel runs as root with
# SUDO_UID=SUDO_GID=65534, like the tests. Nothing is attached to this machine's namespace and
# no traffic leaves the namespaces made here. Everything is removed on exit, Ctrl-C included;
# what a killed run left is removed by the next one.
#
# Run as root: sudo make bench. Knobs (environment): BENCH_SECONDS (length of each load run,
# default 5), BENCH_ROUNDS (rounds of the throughput and connection rows, default 2),
# BENCH_OUT (default docs/BENCHMARKS.md), BENCH_DOPPEL (a doppel binary to measure instead of
# building bin/doppel with make build), BENCH_ONLY=connections (only the new-connection rows
# and the syscall costs, printed and not written: for trying a change to the connect path),
# BENCH_ONLY=incoming (only the mirror rows, redirect, tap and capture, printed and not written: for
# trying a change to the incoming path).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "bench: network namespaces and doppel's agent need root; run: sudo make bench" >&2
  exit 1
fi

case ${BENCH_ONLY:-} in
'' | connections | incoming) ;;
*)
  echo "bench: BENCH_ONLY=$BENCH_ONLY: say connections or incoming, or leave it unset" >&2
  exit 1
  ;;
esac

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
seconds=${BENCH_SECONDS:-5}
rounds=${BENCH_ROUNDS:-2}
out=${BENCH_OUT:-docs/BENCHMARKS.md}
invoker_uid=${SUDO_UID:-} invoker_gid=${SUDO_GID:-}
# doppel runs the program as SUDO_UID:SUDO_GID; the other columns use setpriv with the same ids.
export SUDO_UID=65534 SUDO_GID=65534 SUDO_USER=nobody
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH LANG=C

exec 8>&2 # the terminal's stderr, for messages from inside redirected measurements
say() { printf '\n==> [%3ds] %s\n' "$SECONDS" "$*"; }
die() {
  echo "bench: $*" >&2
  exit 1
}

# ---------------------------------------------------------------------------------------------
# Tools: installed only when missing (the package list of scripts/deps.sh is not ours to edit).
packages=(iproute2 util-linux procps curl jq iperf3 wrk proxychains4 microsocks nginx-light libnginx-mod-stream hyperfine tcpdump)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} > 0)); then
  say "installing ${missing[*]}"
  policy=/usr/sbin/policy-rc.d # keep the nginx package from starting nginx on this machine
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f "$policy"
  trap - EXIT
fi

# ---------------------------------------------------------------------------------------------
# One bench at a time; state of this run under /run/doppel-bench/<pid> so that the next run can
# remove what a killed one left (processes by recorded pid and start time, namespaces, files).
state_root=/run/doppel-bench
mkdir -p "$state_root"
exec 9>"$state_root.lock"
flock -n 9 || die "another bench runs (it holds $state_root.lock)"

starttime() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }

sweep() { # sweep DIR: undo what the run recorded in DIR
  local dir=$1 pid start ns
  if [[ -f $dir/pids ]]; then
    while read -r pid start; do
      if [[ $(starttime "$pid") == "$start" ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
    done <"$dir/pids"
  fi
  if [[ -f $dir/namespaces ]]; then
    while read -r ns; do
      if [[ -e /run/netns/$ns ]]; then ip netns delete "$ns" || true; fi
      rm -rf "/etc/netns/$ns"
    done <"$dir/namespaces"
  fi
  if [[ -f $dir/cluster ]]; then scripts/cluster.sh down || true; fi
  if [[ -f $dir/work ]]; then
    local w
    w=$(cat "$dir/work")
    if [[ $w == /tmp/dplb-* ]]; then rm -rf "$w"; fi
  fi
  rm -rf "$dir"
}
for dir in "$state_root"/*/; do
  [[ -d $dir ]] || continue
  echo "bench: removing what an earlier run left (${dir%/})"
  sweep "${dir%/}"
done

id=dplb-$$
state=$state_root/$$
mkdir -p "$state"
work=$(mktemp -d "/tmp/$id-XXXXXX")
chmod 755 "$work"
echo "$work" >"$state/work"
pids=()

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  sweep "$state"
  echo "bench: removed the namespaces, processes and files it made"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: a long-running process, its output in $work/NAME.log, its pid recorded.
start() {
  local name=$1
  shift
  "$@" >"$work/$name.log" 2>&1 8>&- 9>&- &
  local pid=$!
  pids+=("$pid")
  echo "$pid $(starttime "$pid")" >>"$state/pids"
}

# ---------------------------------------------------------------------------------------------
if [[ -n ${BENCH_DOPPEL:-} ]]; then
  say "using $BENCH_DOPPEL (BENCH_DOPPEL); building the benchmark helper"
  doppel=$(realpath "$BENCH_DOPPEL")
  [[ -x $doppel ]] || die "BENCH_DOPPEL=$BENCH_DOPPEL is not an executable"
else
  say "building doppel (make build) and the benchmark helper"
  make --no-print-directory build
  doppel=$PWD/bin/doppel
fi
CGO_ENABLED=0 go build -trimpath -o "$work/syscallcost" ./test/bench/syscallcost
CGO_ENABLED=0 go build -trimpath -o "$work/httpcount" ./test/bench/httpcount
CGO_ENABLED=0 go build -trimpath -o "$work/fsbench" ./test/bench/fsbench
cp test/bench/connloop.py "$work/connloop.py"
chmod 755 "$work/connloop.py"

say "making the namespaces ($id-{cluster,pod,laptop,peer})"
cluster=$id-cluster pod=$id-pod laptop=$id-laptop peer=$id-peer
for ns in "$cluster" "$pod" "$laptop" "$peer"; do
  echo "$ns" >>"$state/namespaces"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  # Room for the short connections of the connection rows (the server closes first, but the
  # client side may linger in TIME_WAIT too). These are the namespace's own settings.
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
done
ip -n "$cluster" link add veth-pod type veth peer name eth0 netns "$pod"
ip -n "$cluster" addr add 10.244.1.1/24 dev veth-pod
ip -n "$cluster" link set veth-pod up
ip -n "$cluster" addr add 10.96.0.5/32 dev lo
ip -n "$cluster" addr add 10.96.0.80/32 dev lo
ip -n "$pod" addr add 10.244.1.5/24 dev eth0
ip -n "$pod" link set eth0 up
ip -n "$pod" route add default via 10.244.1.1
ip -n "$pod" link add veth-peer type veth peer name eth0 netns "$peer"
ip -n "$pod" addr add 192.168.77.1/30 dev veth-peer
ip -n "$pod" link set veth-peer up
ip -n "$peer" addr add 192.168.77.2/30 dev eth0
ip -n "$peer" link set eth0 up
# Name lookups stay inside: the pod asks a cluster address where nothing answers, the laptop and
# the peer their own loopback. The benchmarks use addresses, not names.
for ns in "$pod" "$laptop" "$peer"; do mkdir -p "/etc/netns/$ns"; done
printf 'nameserver 10.96.0.10\noptions timeout:1 attempts:1\n' >"/etc/netns/$pod/resolv.conf"
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"/etc/netns/$laptop/resolv.conf"
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"/etc/netns/$peer/resolv.conf"

say "starting iperf3 and nginx in the cluster, microsocks and the pod process in the pod"
mkdir -p "$work/nginx-body"
cat >"$work/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx.pid;
error_log stderr;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $work/nginx-body;
    server {
        listen 10.96.0.80:80 backlog=1024;
        default_type text/plain;
        location / { return 200 "hello from nginx\n"; }
    }
}
NGINX
start iperf3 ip netns exec "$cluster" iperf3 -s -B 10.96.0.5 -p 5201
start nginx ip netns exec "$cluster" nginx -p "$work" -c "$work/nginx.conf" -e stderr
start microsocks ip netns exec "$pod" microsocks -i 192.168.77.1 -p 1080
start pod env -i PATH=/usr/bin:/bin ip netns exec "$pod" sleep infinity
pod_pid=${pids[-1]}

cat >"$work/proxychains.conf" <<CONF
strict_chain
quiet_mode
tcp_read_time_out 15000
tcp_connect_time_out 8000
[ProxyList]
socks5 192.168.77.1 1080
CONF

# The three ways to run a client, all as nobody.
nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
direct() { ip netns exec "$pod" "${nobody[@]}" "$@"; }
# doppel may outlive its program: after an iperf3 upload it was seen to wait 5 minutes (yamux's
# stream close timeout) for a splice whose far end stopped reading. So it runs in the background
# and, once the program has ended (doppel has no child but its agent), gets $linger_grace s to
# exit; then it is ended (TERM, then KILL; its agent dies with it) and the run is counted in
# $work/lingered. The program's output is complete by then, and its exit status is checked
# through that output.
linger_grace=3
doppel_flags=()      # flags of doppel exec for the next runs
doppel_ns=$laptop    # where doppel exec runs
doppel() {
  ip netns exec "$doppel_ns" "$doppel" exec --target "pid:$pod_pid" "${doppel_flags[@]}" -- "$@" 8>&- 9>&- &
  local pid=$! gone=0 kids more c
  echo "$pid $(starttime "$pid")" >>"$state/pids" # for the cleanup, should Ctrl-C come now
  while [[ -e /proc/$pid ]]; do
    read -r _ _ c _ <"/proc/$pid/stat" || break
    [[ $c != Z ]] || break
    kids=()
    for c in "/proc/$pid/task/"*/children; do
      read -r -a more <"$c" || true
      kids+=("${more[@]}")
    done
    if ((${#kids[@]} <= 1)); then gone=$((gone + 1)); else gone=0; fi
    if ((gone > linger_grace * 4)); then
      echo "$*" >>"$work/lingered"
      echo "  doppel (pid $pid) still runs ${linger_grace}s after its program ended: ending it" >&8
      kill -TERM "$pid" 2>/dev/null || true
      sleep 1
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      return 0
    fi
    sleep 0.25
  done
  wait "$pid"
}
proxy() { ip netns exec "$peer" "${nobody[@]}" proxychains4 -q -f "$work/proxychains.conf" "$@"; }
# floor: the client in the pod namespace under `doppel exec --no-outgoing`: its connects still
# trap (one notification each, read and let go on), and nothing else happens. Any way of
# intercepting with seccomp pays at least that much per connection.
floor() {
  doppel_ns=$pod
  doppel_flags=(--no-outgoing)
  doppel "$@"
  doppel_ns=$laptop
  doppel_flags=()
}
modes=(direct doppel proxy)

up=0
for _ in $(seq 50); do
  if direct curl -fsS --max-time 1 -o /dev/null http://10.96.0.80/ 2>/dev/null &&
    ip netns exec "$cluster" ss -Hltn 'sport = :5201' | grep -q . &&
    ip netns exec "$pod" ss -Hltn 'sport = :1080' | grep -q . &&
    [[ $(cat "/proc/$pod_pid/comm" 2>/dev/null) == sleep ]]; then
    up=1
    break
  fi
  sleep 0.1
done
if [[ $up != 1 ]]; then
  ip netns exec "$cluster" ss -ltn || true
  tail -n 20 "$work"/*.log >&2 || true
  die "the servers did not come up"
fi
# The peer has no path to the cluster but microsocks.
if ip netns exec "$peer" curl -sS --max-time 2 -o /dev/null http://10.96.0.80/ 2>/dev/null; then
  die "the peer namespace reaches the cluster without the proxy"
fi
for m in "${modes[@]}"; do
  body=$($m curl -fsS --max-time 10 http://10.96.0.80/) || die "curl through $m failed"
  [[ $body == "hello from nginx" ]] || die "curl through $m answered: $body"
done
echo "pod process: pid $pod_pid; curl works direct, under doppel and under proxychains4"

# ---------------------------------------------------------------------------------------------
# Measurements. Each prints one figure on stdout; details go to $work/*.log and the terminal.

# iperf3 MODE [-R]: Gbit/s of one TCP stream for $seconds, as the receiver counted it.
iperf3_run() {
  local m=$1 tag=$1${2:-}
  shift
  local log=$work/iperf3-$tag-$round.json
  $m iperf3 -c 10.96.0.5 -p 5201 -t "$seconds" -P 1 -J "$@" >"$log" 2>"$log.err" ||
    die "iperf3 $tag failed: $(jq -r '.error // empty' "$log" 2>/dev/null) $(cat "$log.err")"
  jq -r '.end.sum_received.bits_per_second / 1e9' "$log"
}

# wrk_run MODE: responses (= connections: one request per connection) per second.
wrk_run() {
  local m=$1 log=$work/wrk-$1-$round.txt
  $m wrk -t 1 -c 4 -d "${seconds}s" -H 'Connection: close' http://10.96.0.80/ >"$log" 2>&1 ||
    die "wrk $m failed: $(cat "$log")"
  local errors
  errors=$(grep -E 'Socket errors|Non-2xx' "$log" | tr -s ' ' || true)
  [[ -z $errors ]] || echo "  wrk $m: $errors" >&2
  awk '/^Requests\/sec:/ {print $2}' "$log"
}

# loop_run MODE: connections per second of connloop.py (connect, GET, read to EOF, close; 4
# processes), the client that works under proxychains4 too.
loop_run() {
  local m=$1 log=$work/connloop-$1-$round.txt
  $m /usr/bin/python3 "$work/connloop.py" 10.96.0.80 80 "$seconds" 4 >"$log" 2>&1 ||
    die "connloop $m failed: $(cat "$log")"
  awk '/^connections_per_second/ {print $2}' "$log"
}

mean() { printf '%s\n' "$@" | awk '{s += $1} END {printf "%.6g", s / NR}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }
fmt() { awk -v a="$1" -v d="$2" 'BEGIN {printf "%." d "f", a}'; }

declare -A res
# row NAME FUNC [ARGS]: ROUNDS rounds of FUNC MODE ARGS, the modes interleaved within a round.
row() {
  local name=$1 fn=$2
  shift 2
  local m v
  for round in $(seq "$rounds"); do
    for m in "${modes[@]}"; do
      v=$($fn "$m" "$@")
      echo "  [${SECONDS}s] $name round $round $m: $v"
      res[$name,$m]+="$v "
    done
  done
}

if [[ ${BENCH_ONLY:-} != incoming ]]; then
if [[ ${BENCH_ONLY:-} != connections ]]; then
  say "bulk TCP throughput, upload (iperf3 -t $seconds -P 1), $rounds rounds"
  row up iperf3_run
  say "bulk TCP throughput, download (iperf3 -R -t $seconds -P 1), $rounds rounds"
  row down iperf3_run -R
fi

say "new connections per second, one request per connection (wrk -t1 -c4 -d${seconds}s -H 'Connection: close'), $rounds rounds"
# wrk under proxychains4: tried once, short, first; when it does not work, the row has no
# proxychains4 column and says why.
wrk_proxy_note=""
round=probe
if proxy timeout 20 wrk -t 1 -c 4 -d 2s -H 'Connection: close' http://10.96.0.80/ >"$work/wrk-proxy-probe.txt" 2>&1 &&
  awk '/^Requests\/sec:/ {exit !($2 > 0)}' "$work/wrk-proxy-probe.txt" &&
  ! grep -q 'Socket errors' "$work/wrk-proxy-probe.txt"; then
  row wrk wrk_run
else
  wrk_proxy_note="wrk does not work under proxychains4: $(grep -E 'Socket errors|Requests/sec|rror' "$work/wrk-proxy-probe.txt" | tr -s ' ' | paste -sd ';' | cut -c1-120)"
  echo "  $wrk_proxy_note" >&2
  modes=(direct doppel)
  row wrk wrk_run
  modes=(direct doppel proxy)
fi

say "new connections per second with connloop.py (python3, 4 processes), $rounds rounds; floor: one notification per connection (doppel exec --no-outgoing in the pod)"
modes=(direct doppel proxy floor)
row loop loop_run
modes=(direct doppel proxy)


say "cost of one intercepted syscall (test/bench/syscallcost, 2 s per call)"
sc_direct=$(ip netns exec "$laptop" "${nobody[@]}" "$work/syscallcost" -d 2s)
sc_doppel=$(doppel "$work/syscallcost" -d 2s)
sc_doppel_remote=$(doppel "$work/syscallcost" -d 2s -remote 10.96.0.80:80)
printf '  direct:\n%s\n  doppel:\n%s\n  doppel, one redirected connection open:\n%s\n' "$sc_direct" "$sc_doppel" "$sc_doppel_remote"
sc() { awk -v c="$2" '$1 == c {print $3}' <<<"$1"; }

if [[ ${BENCH_ONLY:-} == connections ]]; then
  for name in wrk loop; do
    for m in doppel proxy floor; do
      [[ -n ${res[$name,$m]:-} ]] || continue
      # shellcheck disable=SC2086
      echo "$name $m/direct: $(ratio "$(mean ${res[$name,$m]})" "$(mean ${res[$name,direct]})")"
    done
  done
  exit 0
fi
fi # BENCH_ONLY=incoming skips to here

if [[ ${BENCH_ONLY:-} != incoming ]]; then
say "start-up: doppel exec --target pid:$pod_pid -- true vs true (hyperfine, in the laptop)"
ip netns exec "$laptop" hyperfine -N --style basic --warmup 3 --runs 30 --export-json "$work/startup.json" \
  "$doppel exec --target pid:$pod_pid -- true" "true"
t_doppel=$(jq -r '.results[0].mean * 1000' "$work/startup.json")
t_true=$(jq -r '.results[1].mean * 1000' "$work/startup.json")
t_doppel_sd=$(jq -r '.results[0].stddev * 1000' "$work/startup.json")
fi

# ---------------------------------------------------------------------------------------------
# Incoming traffic: the pod runs its own nginx on port 80 (every address of the pod); the peer
# namespace is the client, wrk sends to 192.168.77.1:80; doppel's program is httpcount, which
# counts the requests it gets. nginx's stub_status (on the pod's 127.0.0.1:8081, not redirected)
# counts the requests nginx served.
say "incoming: nginx in the pod (the target's own service), clients in the peer namespace"
mkdir -p "$work/podnginx/body"
cat >"$work/podnginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $work/podnginx.pid;
error_log stderr;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/podnginx/body;
    server {
        listen 80 backlog=1024;
        default_type text/plain;
        keepalive_requests 1000000;
        location / { return 200 "hello from the pod\n"; }
    }
    server {
        listen 127.0.0.1:8081;
        location / { stub_status; }
    }
}
NGINX
# Two CPUs, two machines: the pod's side (its nginx, the clients' wrk and doppel's agent) runs on
# CPU 0, the developer's side (doppel exec and its program) on CPU 1, as the node and the laptop
# would; with one CPU everything shares it.
if (($(nproc) >= 2)); then pod_cpu=0 laptop_cpu=1; else pod_cpu=0 laptop_cpu=0; fi
start podnginx taskset -c "$pod_cpu" ip netns exec "$pod" nginx -p "$work/podnginx" -c "$work/podnginx.conf" -e stderr
# served: requests nginx has served so far (each call adds its own, which served_between removes).
served() { ip netns exec "$pod" curl -fsS --max-time 5 http://127.0.0.1:8081/ | awk 'NR == 3 {print $3}'; }
served_between() { echo $(($2 - $1 - 1)); }
for _ in $(seq 50); do
  ip netns exec "$peer" curl -fsS --max-time 1 -o /dev/null http://192.168.77.1/ 2>/dev/null && break
  sleep 0.1
done
[[ $(ip netns exec "$peer" curl -fsS --max-time 2 http://192.168.77.1/) == "hello from the pod" ]] ||
  die "the pod's nginx does not answer the peer"
served >/dev/null || die "nginx's stub_status does not answer"

# session_start NAME FLAGS...: `doppel exec FLAGS -- httpcount` in the laptop, in the
# background, until its program says it listens. session_stop NAME ends it (SIGTERM) and prints
# the last count.
declare -A sess_pid
session_start() {
  local name=$1
  shift
  taskset -c "$laptop_cpu" ip netns exec "$laptop" "$doppel" exec --target "pid:$pod_pid" "$@" -- "$work/httpcount" -listen :80 \
    >"$work/sess-$name.out" 2>"$work/sess-$name.err" 8>&- 9>&- &
  sess_pid[$name]=$!
  echo "$! $(starttime $!)" >>"$state/pids"
  local p
  for _ in $(seq 200); do
    if grep -q '^listening' "$work/sess-$name.out" 2>/dev/null; then
      # The agent belongs to the pod's side: it would run on the target's node.
      for p in $(pgrep -f -- " agent --pid $pod_pid"); do
        taskset -a -p -c "$pod_cpu" "$p" >/dev/null
      done
      return 0
    fi
    kill -0 "${sess_pid[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  die "doppel exec $* did not start its program: $(cat "$work/sess-$name.err")"
}
session_count() { awk '$1 == "requests" {n = $2} END {print n + 0}' "$work/sess-$1.out"; }
# session_settle NAME WANT: waits until the program's count reaches WANT, or has not moved for
# 2 s (at most 60 s): copies arrive after the real answers, the more so the more the program side
# lags behind the load.
session_settle() {
  local last=-1 now still=0
  for _ in $(seq 300); do
    now=$(session_count "$1")
    ((now >= $2)) && break
    if ((now == last)); then still=$((still + 1)); else still=0; fi
    ((still >= 10)) && break
    last=$now
    sleep 0.2
  done
}
session_stop() {
  local pid=${sess_pid[$1]}
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  session_count "$1"
}

# wrk_in LOG URL WRK-ARGS...: requests/s of wrk from the peer (as nobody).
wrk_in() {
  local log=$1 url=$2
  shift 2
  taskset -c "$pod_cpu" ip netns exec "$peer" "${nobody[@]}" wrk -d "${seconds}s" "$@" "$url" >"$log" 2>&1 || die "wrk failed: $(cat "$log")"
  local errors
  errors=$(grep -E 'Socket errors|Non-2xx' "$log" | tr -s ' ' || true)
  [[ -z $errors ]] || echo "  wrk ($log): $errors" >&2
  awk '/^Requests\/sec:/ {print $2}' "$log"
}

# mirror_round KIND WRK-ARGS...: one round of "off" then a mirror session with mirror_flags;
# stores throughput and fidelity under the row family fam (in: redirect, tap: the eBPF tap).
fam=in
mirror_round() {
  local kind=$1 b a rps got
  shift
  b=$(served)
  rps=$(wrk_in "$work/$fam-$kind-off-$round.txt" http://192.168.77.1/ "$@")
  a=$(served)
  echo "  [${SECONDS}s] $fam $kind round $round off: $rps req/s, nginx served $(served_between "$b" "$a")"
  res[${fam}_$kind,off]+="$rps "
  session_start "$fam-$kind-$round" "${mirror_flags[@]}"
  b=$(served)
  rps=$(wrk_in "$work/$fam-$kind-on-$round.txt" http://192.168.77.1/ "$@")
  a=$(served)
  session_settle "$fam-$kind-$round" "$(served_between "$b" "$a")"
  got=$(session_stop "$fam-$kind-$round")
  echo "  [${SECONDS}s] $fam $kind round $round mirror: $rps req/s, nginx served $(served_between "$b" "$a"), the program got $got"
  res[${fam}_$kind,on]+="$rps "
  res[${fam}_$kind,served]+="$(served_between "$b" "$a") "
  res[${fam}_$kind,got]+="$got "
}

mirror_flags=()
say "mirror (redirect): wrk -t1 -c16 (keep-alive) from the peer to the pod's nginx, session off/on, $rounds rounds"
for round in $(seq "$rounds"); do mirror_round keepalive -t 1 -c 16; done
say "mirror (redirect): wrk -t1 -c4 -H 'Connection: close' (a connection per request), session off/on, $rounds rounds"
for round in $(seq "$rounds"); do mirror_round close -t 1 -c 4 -H 'Connection: close'; done
fam=tap mirror_flags=(--mirror-tap)
say "mirror (eBPF tap): keep-alive and a connection per request, session off/on, $rounds rounds"
for round in $(seq "$rounds"); do mirror_round keepalive -t 1 -c 16; done
for round in $(seq "$rounds"); do mirror_round close -t 1 -c 4 -H 'Connection: close'; done

# tcpdump_start NAME [SNAPLEN FILTER]: tcpdump in the pod, by default beside the capture: the
# first 96 bytes of the packets that start with "GET " (each request of these loads is one such
# packet), to the pod's port 80. tcpdump_stop prints how many it captured.
tcpdump_start() {
  local snap=${2:-96} filter=${3:-'tcp dst port 80 and tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420'}
  taskset -c "$pod_cpu" ip netns exec "$pod" tcpdump -i any -n -s "$snap" -B 65536 -w /dev/null \
    "$filter" >"$work/tcpdump-$1.log" 2>&1 8>&- 9>&- &
  tcpdump_pid=$!
  echo "$! $(starttime $!)" >>"$state/pids"
  for _ in $(seq 50); do
    grep -q 'listening on' "$work/tcpdump-$1.log" && return 0
    sleep 0.1
  done
  die "tcpdump did not start: $(cat "$work/tcpdump-$1.log")"
}
tcpdump_stop() {
  kill -INT "$tcpdump_pid"
  wait "$tcpdump_pid" 2>/dev/null || true
  awk '/packets captured/ {print $1}' "$work/tcpdump-$1.log"
}
# capture_round KIND WRK-ARGS...: off, then a capture session, then a capture session with
# tcpdump beside it on the same traffic.
capture_round() {
  local kind=$1 b a rps got dumped
  shift
  b=$(served)
  rps=$(wrk_in "$work/cap-$kind-off-$round.txt" http://192.168.77.1/ "$@")
  a=$(served)
  res[cap_$kind,off]+="$rps "
  echo "  [${SECONDS}s] capture $kind round $round off: $rps req/s"
  session_start "cap-$kind-$round" --mirror-capture
  b=$(served)
  rps=$(wrk_in "$work/cap-$kind-on-$round.txt" http://192.168.77.1/ "$@")
  a=$(served)
  session_settle "cap-$kind-$round" "$(served_between "$b" "$a")"
  got=$(session_stop "cap-$kind-$round")
  res[cap_$kind,on]+="$rps "
  res[cap_$kind,served]+="$(served_between "$b" "$a") "
  res[cap_$kind,got]+="$got "
  echo "  [${SECONDS}s] capture $kind round $round on: $rps req/s, nginx served $(served_between "$b" "$a"), the program got $got"
  session_start "capdump-$kind-$round" --mirror-capture
  tcpdump_start "$kind-$round"
  b=$(served)
  rps=$(wrk_in "$work/cap-$kind-dump-$round.txt" http://192.168.77.1/ "$@")
  a=$(served)
  session_settle "capdump-$kind-$round" "$(served_between "$b" "$a")"
  got=$(session_stop "capdump-$kind-$round")
  dumped=$(tcpdump_stop "$kind-$round")
  res[capdump_$kind,served]+="$(served_between "$b" "$a") "
  res[capdump_$kind,got]+="$got "
  res[capdump_$kind,dumped]+="$dumped "
  echo "  [${SECONDS}s] capture $kind round $round beside tcpdump: $rps req/s, nginx served $(served_between "$b" "$a"), the program got $got, tcpdump $dumped"
}
say "mirror (passive capture): keep-alive and a connection per request; off, on, and on beside tcpdump; $rounds rounds"
for round in $(seq "$rounds"); do capture_round keepalive -t 1 -c 16; done
for round in $(seq "$rounds"); do capture_round close -t 1 -c 4 -H 'Connection: close'; done

# References, without doppel, on the same loads and CPU: what the pod keeps with a relay in each
# connection's path (nginx's stream proxy in the pod, port 8083 to its own nginx: a C relay with
# no copy and no rules), and with a packet capture beside it (tcpdump writing whole packets to
# port 80 to /dev/null). The first bounds any design that relays each connection, as mirror by
# redirect does; the second, any that reads every packet, as passive capture does.
cat >"$work/relay.conf" <<NGINX
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process off;
worker_processes 1;
pid $work/relay.pid;
error_log stderr;
events { worker_connections 1024; }
stream {
    server {
        listen 8083 backlog=1024;
        proxy_pass 127.0.0.1:80;
    }
}
NGINX
start relay taskset -c "$pod_cpu" ip netns exec "$pod" nginx -p "$work" -c "$work/relay.conf" -e stderr
for _ in $(seq 50); do
  ip netns exec "$peer" curl -fsS --max-time 1 -o /dev/null http://192.168.77.1:8083/ 2>/dev/null && break
  sleep 0.1
done
[[ $(ip netns exec "$peer" curl -fsS --max-time 2 http://192.168.77.1:8083/) == "hello from the pod" ]] ||
  die "nginx's stream proxy in the pod does not relay: $(cat "$work/relay.log")"
# ref_round KIND WRK-ARGS...: off, through the relay, beside tcpdump.
ref_round() {
  local kind=$1 off rel dump
  shift
  off=$(wrk_in "$work/ref-$kind-off-$round.txt" http://192.168.77.1/ "$@")
  rel=$(wrk_in "$work/ref-$kind-relay-$round.txt" http://192.168.77.1:8083/ "$@")
  tcpdump_start "ref-$kind-$round" 0 'tcp dst port 80'
  dump=$(wrk_in "$work/ref-$kind-dump-$round.txt" http://192.168.77.1/ "$@")
  tcpdump_stop "ref-$kind-$round" >/dev/null
  res[rel_$kind,off]+="$off " res[rel_$kind,on]+="$rel "
  res[dump_$kind,off]+="$off " res[dump_$kind,on]+="$dump "
  echo "  [${SECONDS}s] reference $kind round $round: $off req/s direct, $rel through nginx's stream proxy, $dump beside tcpdump"
}
say "references without doppel: a relay in the path (nginx stream proxy), a packet capture beside (tcpdump); $rounds rounds"
for round in $(seq "$rounds"); do ref_round keepalive -t 1 -c 16; done
for round in $(seq "$rounds"); do ref_round close -t 1 -c 4 -H 'Connection: close'; done

if [[ ${BENCH_ONLY:-} == incoming ]]; then
  for f in in tap cap rel dump; do
    for k in keepalive close; do
      [[ -n ${res[${f}_$k,on]:-} ]] || continue
      # shellcheck disable=SC2086
      echo "$f $k on/off: $(ratio "$(mean ${res[${f}_$k,on]})" "$(mean ${res[${f}_$k,off]})")${res[${f}_$k,got]:+, got/served: $(printf '%s\n' ${res[${f}_$k,got]} | awk '{s += $1} END {print s + 0}')/$(printf '%s\n' ${res[${f}_$k,served]} | awk '{s += $1} END {print s + 0}')}"
    done
  done
  exit 0
fi

# latency WRK-LOG PERCENTILE: µs
latency() {
  awk -v p="$2" '$1 == p {v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
    f = (u == "ms") ? 1000 : (u == "s") ? 1e6 : 1; printf "%.1f", v * f}' "$1"
}
say "steal: latency of one connection's sequential requests (wrk -t1 -c1 --latency), program in the pod vs stolen to the laptop, $rounds rounds"
start direct-httpcount taskset -c "$pod_cpu" ip netns exec "$pod" "${nobody[@]}" "$work/httpcount" -listen :8082
for _ in $(seq 50); do
  ip netns exec "$peer" curl -fsS --max-time 1 -o /dev/null http://192.168.77.1:8082/ 2>/dev/null && break
  sleep 0.1
done
for round in $(seq "$rounds"); do
  wrk_in "$work/steal-direct-$round.txt" http://192.168.77.1:8082/ -t 1 -c 1 --latency >/dev/null
  session_start "steal-$round" --steal
  wrk_in "$work/steal-on-$round.txt" http://192.168.77.1/ -t 1 -c 1 --latency >/dev/null
  session_stop "steal-$round" >/dev/null
  for p in 50% 99%; do
    res[steal$p,direct]+="$(latency "$work/steal-direct-$round.txt" $p) "
    res[steal$p,on]+="$(latency "$work/steal-on-$round.txt" $p) "
  done
  echo "  [${SECONDS}s] steal round $round: p50 ${res[steal50%,direct]}/${res[steal50%,on]} µs, p99 ${res[steal99%,direct]}/${res[steal99%,on]} µs (direct/stolen, so far)"
done

# ---------------------------------------------------------------------------------------------
# Remote files: the same program reads the same files directly in the pod, and under doppel with
# the directory made the target's (--fs-read), so doppel's agent opens them in the pod and
# passes the descriptors.
say "remote files: a small file's open+read+close and stat, a 256 MiB file streamed; in the pod vs under doppel, $rounds rounds"
mkdir -p "$work/files"
printf 'a small configuration file\n' >"$work/files/small.conf"
head -c 256M /dev/zero >"$work/files/big.bin"
chmod -R a+rX "$work/files"
fs_run() { # fs_run MODE: the lines of fsbench
  $1 "$work/fsbench" -d "$((seconds < 4 ? 1 : seconds / 2))s" -small "$work/files/small.conf" -big "$work/files/big.bin"
}
fs_field() { awk -v op="$2" '$1 == op {print $3}' <<<"$1"; }
for round in $(seq "$rounds"); do
  for m in direct doppel; do
    doppel_flags=(--fs-read "$work/files")
    fs_out=$(fs_run "$m") || die "fsbench $m failed"
    doppel_flags=()
    for op in open_read_close stat stream; do res[fs_$op,$m]+="$(fs_field "$fs_out" "$op") "; done
    echo "  [${SECONDS}s] files round $round $m: $(tr '\n' ';' <<<"$fs_out")"
  done
done

# ---------------------------------------------------------------------------------------------
# The table.
cell() { # cell NAME MODE DIGITS UNIT: the mean of the rounds
  local v
  v=$(mean ${res[$1,$2]})
  echo "$(fmt "$v" "$3") $4"
}
ratios() { # ratios NAME MODE: ratio of the means, and per round
  local a=(${res[$1,$2]}) b=(${res[$1,direct]}) i per=()
  for i in "${!a[@]}"; do per+=("$(ratio "${a[$i]}" "${b[$i]}")"); done
  local IFS=,
  echo "**$(ratio "$(mean "${a[@]}")" "$(mean "${b[@]}")")** (${per[*]// /})"
}
verdict() { # verdict RATIO AIM [RIVAL]: whether RATIO reaches AIM and beats RIVAL, and if not why
  awk -v r="$1" -v aim="$2" -v rival="${3:-}" 'BEGIN {
    why = ""
    if (r < aim) why = "under " aim
    if (rival != "" && r <= rival) why = why (why == "" ? "" : ", ") "behind proxychains4 (" rival ")"
    print (why == "" ? "met" : "not met: " why)
  }'
}
ratio_of() { ratio "$(mean ${res[$1,$2]})" "$(mean ${res[$1,direct]})"; }

up_doppel=$(ratio_of up doppel) up_proxy=$(ratio_of up proxy)
loop_doppel=$(ratio_of loop doppel) loop_proxy=$(ratio_of loop proxy)
wrk_doppel=$(ratio_of wrk doppel)
if [[ -z $wrk_proxy_note ]]; then
  wrk_proxy_cell=$(cell wrk proxy 0 conn/s)
  wrk_proxy_ratio=$(ratios wrk proxy)
  wrk_verdict=$(verdict "$wrk_doppel" 0.5 "$(ratio_of wrk proxy)")
else
  wrk_proxy_cell="does not work (see below)"
  wrk_proxy_ratio="n/a"
  wrk_verdict="$(verdict "$wrk_doppel" 0.5) (no proxychains4 figure)"
fi

# Incoming rows.
# The optional last argument of these is the row family: "in" (redirect, the default), "tap" or
# "cap".
in_mean() { mean ${res[${3:-in}_$1,$2]}; }
in_cell() { echo "$(fmt "$(in_mean "$1" "$2" "${3:-in}")" 0) req/s"; }
ratio_in() { ratio "$(in_mean "$1" on "${2:-in}")" "$(in_mean "$1" off "${2:-in}")"; }
in_ratio() {
  local f=${2:-in}
  local a=(${res[${f}_$1,on]}) b=(${res[${f}_$1,off]}) i per=()
  for i in "${!a[@]}"; do per+=("$(ratio "${a[$i]}" "${b[$i]}")"); done
  local IFS=,
  echo "**$(ratio_in "$1" "$f")** (${per[*]// /})"
}
dump_sum() { printf '%s\n' ${res[capdump_$1,$2]} | awk '{s += $1} END {print s + 0}'; }
dump_ratio() { awk -v a="$(dump_sum "$1" "$2")" -v b="$(dump_sum "$1" served)" 'BEGIN {printf "%.4f", b ? a / b : 0}'; }
in_fid() {
  local f=${2:-in}
  local g=(${res[${f}_$1,got]}) s=(${res[${f}_$1,served]}) i per=() tg=0 ts=0
  for i in "${!g[@]}"; do
    per+=("${g[$i]}/${s[$i]}")
    tg=$((tg + g[i])) ts=$((ts + s[i]))
  done
  local IFS=,
  echo "**$(awk -v a="$tg" -v b="$ts" 'BEGIN {printf "%.4f", b ? a / b : 0}')** (${per[*]})"
}
fid_verdict() {
  local f=${2:-in}
  local g=(${res[${f}_$1,got]}) s=(${res[${f}_$1,served]}) i
  for i in "${!g[@]}"; do
    if ((g[i] != s[i])); then echo "not met"; return; fi
  done
  echo "met"
}
lat_cell() { echo "$(fmt "$(mean ${res[steal$1,$2]})" 0) µs"; }
lat_added() { awk -v a="$(mean ${res[steal$1,on]})" -v b="$(mean ${res[steal$1,direct]})" 'BEGIN {printf "%+.0f µs", a - b}'; }

fs_cell() { # fs_cell OP MODE DIGITS UNIT: the mean of the rounds (ns become µs)
  local v
  v=$(mean ${res[fs_$1,$2]})
  if [[ $4 == µs ]]; then v=$(awk -v a="$v" 'BEGIN {print a / 1000}'); fi
  echo "$(fmt "$v" "$3") $4"
}
fs_ratio() { ratio "$(mean ${res[fs_$1,doppel]})" "$(mean ${res[fs_$1,direct]})"; }
p_direct=$(sc "$sc_direct" getpeername) p_doppel=$(sc "$sc_doppel" getpeername) p_remote=$(sc "$sc_doppel_remote" getpeername)
s_direct=$(sc "$sc_direct" fcntl) s_doppel=$(sc "$sc_doppel" fcntl)
us() { awk -v a="$1" 'BEGIN {printf "%.2f µs", a / 1000}'; }
diff_us() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%+.2f µs", (a - b) / 1000}'; }

# ---------------------------------------------------------------------------------------------
# Kubernetes: the test cluster (scripts/cluster.sh), started for these rows and stopped after
# them; test/cluster's TestBenchKube measures and writes its section.
say "Kubernetes: start-up phases and port-forward throughput on the test cluster"
scripts/cluster.sh build
touch "$state/cluster" # cleanup stops the cluster from here on
scripts/cluster.sh up
cluster_md=$work/cluster.md
if ! DOPPEL_PRIVILEGED_TESTS=1 DOPPEL_CLUSTER_KUBECONFIG=/run/doppel-cluster/admin.kubeconfig \
  KUBECTL="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print "/var/cache/doppel-kube/" $3 "/bin/kubectl"}' tools/kube/go.mod)" \
  DOPPEL_CLUSTER_CONTAINERD=/run/doppel-cluster/containerd/containerd.sock DOPPEL_CLUSTER_BENCH_OUT="$cluster_md" \
  BENCH_ROUNDS="$rounds" go test -count=1 -timeout 20m -run '^TestBenchKube$' -v ./test/cluster/ >"$work/cluster-bench.log" 2>&1; then
  tail -40 "$work/cluster-bench.log" >&2
  die "the Kubernetes benchmark failed (its log above)"
fi
scripts/cluster.sh down
rm -f "$state/cluster"

lingered=none
if [[ -s $work/lingered ]]; then
  lingered="$(wc -l <"$work/lingered") of them: $(sort "$work/lingered" | uniq -c | awk '{n = $1; $1 = ""; printf "%s`%s` (%d×)", sep, substr($0, 2), n; sep = ", "}')"
fi
command="scripts/bench.sh"
if [[ -n ${MAKELEVEL:-} ]]; then command="make bench"; fi
command="sudo $command   (BENCH_SECONDS=$seconds BENCH_ROUNDS=$rounds${BENCH_DOPPEL:+ BENCH_DOPPEL=$BENCH_DOPPEL})"
tmp=$(mktemp "$work/bench-md-XXXXXX")
cat >"$tmp" <<EOF
# Benchmarks

What doppel costs a program, measured as ratios to the same program run directly in the target's
network namespace. Absolute figures on a small shared machine are noise; ratios of figures taken
side by side in one run are not (each load row runs the columns interleaved, round by round, and
the ratio cell gives the ratio of the means, then the ratio of each round in parentheses).

Reproduce with \`sudo make bench\` (scripts/bench.sh; about 5 minutes, and the test cluster's
first build). It builds \`bin/doppel\`
(\`make build\`) and its own throw-away topology of network namespaces, like the privileged tests:

- **cluster**: the servers, iperf3 (10.96.0.5:5201) and nginx (10.96.0.80:80, a 17-byte
  body), joined to the pod by a veth;
- **pod**: 10.244.1.5, default route to the cluster; the pod process (\`sleep\`) is doppel's
  target; microsocks (SOCKS5) listens on its second veth, 192.168.77.1:1080;
- **laptop**: loopback only; doppel and the measured client run here;
- **peer**: a laptop-like namespace whose one link is a /30 veth to the pod (no other route): the
  proxychains4 client, whose only path out is microsocks in the pod.

The columns run the same client program: **direct** inside the pod namespace (what the pod
itself gets); **doppel** in the laptop under \`doppel exec --target pid:<pod process>\`, doppel
as root with SUDO_UID=SUDO_GID=65534, so the program runs as nobody; **proxychains4** in the
peer namespace under \`proxychains4\` through microsocks in the pod. Every client runs as nobody.
doppel runs with its defaults (outgoing TCP/UDP redirected, remote DNS and files on).

## Load, ratios to direct

| Row | direct | doppel | proxychains4 + microsocks | doppel / direct | proxychains4 / direct | aim (doppel) |
|---|---|---|---|---|---|---|
| Bulk TCP throughput, upload: iperf3 client → server, 1 stream, ${seconds} s | $(cell up direct 2 Gbit/s) | $(cell up doppel 2 Gbit/s) | $(cell up proxy 2 Gbit/s) | $(ratios up doppel) | $(ratios up proxy) | ≥ 0.8: $(verdict "$up_doppel" 0.8) |
| Bulk TCP throughput, download: iperf3 -R, 1 stream, ${seconds} s | $(cell down direct 2 Gbit/s) | $(cell down doppel 2 Gbit/s) | $(cell down proxy 2 Gbit/s) | $(ratios down doppel) | $(ratios down proxy) | none set |
| New connections/s, one request per connection: wrk -t1 -c4 -H 'Connection: close', ${seconds} s | $(cell wrk direct 0 conn/s) | $(cell wrk doppel 0 conn/s) | $wrk_proxy_cell | $(ratios wrk doppel) | $wrk_proxy_ratio | ≥ 0.5 and ahead of proxychains4: $wrk_verdict |
| New connections/s, one request per connection: connloop.py (python3, 4 processes: connect, GET, read to EOF, close), ${seconds} s | $(cell loop direct 0 conn/s) | $(cell loop doppel 0 conn/s) | $(cell loop proxy 0 conn/s) | $(ratios loop doppel) | $(ratios loop proxy) | ≥ 0.5 and ahead of proxychains4: $(verdict "$loop_doppel" 0.5 "$loop_proxy") |

The floor of interception for connloop.py: the same client in the pod's namespace under
\`doppel exec --no-outgoing\`, where each connect still traps (one notification, its address
read, the call let go on) and nothing else happens: $(cell loop floor 0 conn/s), $(ratios loop floor)
of direct. Under doppel, where the program runs in the target's network namespace (a local
target's default), a connection to the target's network costs that notification too and
nothing more; with \`--no-join-netns\` it also costs a descriptor installed in the program at
socket(2) (SECCOMP_IOCTL_NOTIF_ADDFD), which wakes the program's thread and waits for it.

EOF
if [[ -n $wrk_proxy_note ]]; then
  cat >>"$tmp" <<EOF
${wrk_proxy_note}. The connloop.py row is the connection rate with a client that works in all
three columns (python3 is dynamically linked, so proxychains4's LD_PRELOAD applies).

EOF
fi
cat >>"$tmp" <<EOF
## Incoming traffic

The pod runs its own nginx on port 80 (a 19-byte body); clients in the **peer** namespace load
it with wrk for ${seconds} s at the highest rate they reach. doppel's program is
\`test/bench/httpcount\` (counts the requests it gets) under \`doppel exec --target pid:<pod
process>\` in the laptop, run as nobody, so doppel gives it another local port than 80. nginx's
stub_status counts what nginx served. The two CPUs stand for two machines: the pod's side
(nginx, wrk, and doppel's agent, which runs beside the target) is pinned to CPU $pod_cpu, the
developer's side (doppel exec and its program) to CPU $laptop_cpu (taskset); so "session on"
costs the pod's side what doppel's agent and its rules cost, not what the developer's program
costs. Without the pinning the program's copy of the load competes with nginx for the same two
CPUs (see the notes).

| Row | session off | session on | on / off | requests the program got / nginx served | aim |
|---|---|---|---|---|---|
| Mirror (redirect), keep-alive: wrk -t1 -c16 | $(in_cell keepalive off) | $(in_cell keepalive on) | $(in_ratio keepalive) | $(in_fid keepalive) | throughput ≥ 0.8: $(verdict "$(ratio_in keepalive)" 0.8); fidelity 1.0: $(fid_verdict keepalive) |
| Mirror (redirect), a connection per request: wrk -t1 -c4 -H 'Connection: close' | $(in_cell close off) | $(in_cell close on) | $(in_ratio close) | $(in_fid close) | throughput ≥ 0.8: $(verdict "$(ratio_in close)" 0.8); fidelity 1.0: $(fid_verdict close) |
| Mirror (eBPF tap), keep-alive: wrk -t1 -c16 | $(in_cell keepalive off tap) | $(in_cell keepalive on tap) | $(in_ratio keepalive tap) | $(in_fid keepalive tap) | throughput ≥ 0.8 (redirect's aim: no copy is lost either): $(verdict "$(ratio_in keepalive tap)" 0.8); fidelity 1.0: $(fid_verdict keepalive tap) |
| Mirror (eBPF tap), a connection per request: wrk -t1 -c4 -H 'Connection: close' | $(in_cell close off tap) | $(in_cell close on tap) | $(in_ratio close tap) | $(in_fid close tap) | throughput ≥ 0.8 (redirect's aim): $(verdict "$(ratio_in close tap)" 0.8); fidelity 1.0: $(fid_verdict close tap) |
| Mirror (passive capture), keep-alive: wrk -t1 -c16 | $(in_cell keepalive off cap) | $(in_cell keepalive on cap) | $(in_ratio keepalive cap) | $(in_fid keepalive cap) | throughput ≥ 0.95: $(verdict "$(ratio_in keepalive cap)" 0.95); fidelity 1.0: $(fid_verdict keepalive cap) |
| Mirror (passive capture), a connection per request: wrk -t1 -c4 -H 'Connection: close' | $(in_cell close off cap) | $(in_cell close on cap) | $(in_ratio close cap) | $(in_fid close cap) | throughput ≥ 0.95: $(verdict "$(ratio_in close cap)" 0.95); fidelity 1.0: $(fid_verdict close cap) |
| Reference without doppel: nginx's stream proxy in the path (port 8083 to the pod's nginx), keep-alive | $(in_cell keepalive off rel) | $(in_cell keepalive on rel) | $(in_ratio keepalive rel) | n/a | none: what any relay of each connection keeps |
| Reference without doppel: nginx's stream proxy in the path, a connection per request | $(in_cell close off rel) | $(in_cell close on rel) | $(in_ratio close rel) | n/a | none |
| Reference without doppel: tcpdump -s 0 'tcp dst port 80' -w /dev/null beside nginx, keep-alive | $(in_cell keepalive off dump) | $(in_cell keepalive on dump) | $(in_ratio keepalive dump) | n/a | none: what reading every packet keeps |
| Reference without doppel: tcpdump beside nginx, a connection per request | $(in_cell close off dump) | $(in_cell close on dump) | $(in_ratio close dump) | n/a | none |

The two references run the same loads without doppel on the same CPU: a relay in each
connection's path (nginx's stream proxy, written in C, copying nothing and writing no rules) is
the most that mirror by redirect could keep, since its agent relays each connection; tcpdump
reading every packet to port 80 is the most that passive capture could keep.

Redirect (the default) and the eBPF tap (\`--mirror-tap\`) never lose a copy: redirect because
the agent relays each connection itself, the tap because a segment it cannot copy is dropped
for the client to send again. Passive capture (\`--mirror-capture\`) loses copies when its
ring overflows, and says so.

Passive capture beside tcpdump (\`tcpdump -i any\` in the pod, counting the packets that start
with "GET ", one per request in these loads) during one more run of the same load, the capture
session on too:

| Load | nginx served | the program got (doppel's capture) | tcpdump captured | doppel / served | tcpdump / served |
|---|---|---|---|---|---|
| keep-alive: wrk -t1 -c16 | $(dump_sum keepalive served) | $(dump_sum keepalive got) | $(dump_sum keepalive dumped) | **$(dump_ratio keepalive got)** | **$(dump_ratio keepalive dumped)** |
| a connection per request: wrk -t1 -c4 -H 'Connection: close' | $(dump_sum close served) | $(dump_sum close got) | $(dump_sum close dumped) | **$(dump_ratio close got)** | **$(dump_ratio close dumped)** |

Steal, added latency: one connection's sequential requests (wrk -t1 -c1 --latency, ${seconds} s),
httpcount run directly in the pod (port 8082) against httpcount in the laptop stealing port 80.

| Percentile | program in the pod | stolen to the laptop | added |
|---|---|---|---|
| p50 | $(lat_cell 50% direct) | $(lat_cell 50% on) | **$(lat_added 50%)** |
| p99 | $(lat_cell 99% direct) | $(lat_cell 99% on) | **$(lat_added 99%)** |

## Remote files

fsbench (test/bench/fsbench, static Go) reads files of a directory of the pod's: directly in the
pod's namespace, and under \`doppel exec --fs-read <directory>\`, where doppel's agent opens
each file inside the pod's root and the program gets the descriptor (reads then are the
kernel's own; opens and stats are trapped and go through the agent).

| Row | in the pod | under doppel | doppel / pod |
|---|---|---|---|
| open + read + close of a 27-byte file, per operation | $(fs_cell open_read_close direct 1 µs) | $(fs_cell open_read_close doppel 1 µs) | **$(fs_ratio open_read_close)** (time, lower is better) |
| stat of that file, per call | $(fs_cell stat direct 2 µs) | $(fs_cell stat doppel 2 µs) | **$(fs_ratio stat)** (time) |
| streaming read of a 256 MiB file, 1 MiB reads | $(fs_cell stream direct 0 MB/s) | $(fs_cell stream doppel 0 MB/s) | **$(fs_ratio stream)** (throughput) |

## Kubernetes (the test cluster)

On the real single-node test cluster (scripts/cluster.sh: kube-apiserver, kubelet, containerd,
kube-proxy, CoreDNS on this machine), with the program in a laptop namespace that reaches only
the API server, as a developer bound to docs/rbac.yaml's Role (test/cluster, TestBenchKube).

$(cat "$cluster_md")

## Interception and start-up

| Row | without doppel | under doppel | difference |
|---|---|---|---|
| One trapped syscall let through (CONTINUE): getpeername(2) on a loopback TCP socket doppel did not redirect (test/bench/syscallcost, static Go, 2 s of calls) | $(us "$p_direct") | $(us "$p_doppel") | **$(diff_us "$p_doppel" "$p_direct")** per call |
| The same while the program has one redirected connection open (the handler looks the socket up) | $(us "$p_direct") | $(us "$p_remote") | **$(diff_us "$p_remote" "$p_direct")** per call |
| Control: fcntl(2) F_GETFL on the socket, not trapped (only the seccomp filter runs) | $(us "$s_direct") | $(us "$s_doppel") | $(diff_us "$s_doppel" "$s_direct") per call |
| Start-up: \`doppel exec --target pid:P -- true\` vs \`true\`, in the laptop (hyperfine -N, 30 runs, 3 warm-up) | $(fmt "$t_true" 2) ms | $(fmt "$t_doppel" 1) ms (± $(fmt "$t_doppel_sd" 1)) | **$(awk -v a="$t_doppel" -v b="$t_true" 'BEGIN {printf "%+.1f ms", a - b}')** |

No aim is set for these two; they say what a trapped call and a session start cost.

## This run

- Command: \`$command\`
- Date: $(date -u '+%Y-%m-%d %H:%M UTC')
- Kernel: \`$(uname -r)\`; $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)); load average before the run: $load_before
- doppel runs that outlived their program by more than ${linger_grace} s and were ended by the script: $lingered
- doppel: \`$("$doppel" version 2>/dev/null | head -1)\` (a -dirty version has changes not yet committed), sha256 of the binary $(sha256sum "$doppel" | cut -c1-12); $(iperf3 --version | head -1 | cut -d' ' -f1,2), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $(hyperfine --version), Python $(/usr/bin/python3 -c 'import platform; print(platform.python_version())')
EOF
# Notes written by hand below the marker line are kept from one run to the next.
marker='<!-- Notes below this line are written by hand; scripts/bench.sh keeps them. -->'
if [[ -f $out ]] && grep -qF -- "$marker" "$out"; then
  printf '\n' >>"$tmp"
  sed -n "\|^$marker\$|,\$p" "$out" >>"$tmp"
else
  printf '\n%s\n' "$marker" >>"$tmp"
fi
mkdir -p "$(dirname "$out")"
install -m 644 "$tmp" "$out"
if [[ -n $invoker_uid && $invoker_uid != 0 ]]; then chown "$invoker_uid:$invoker_gid" "$out" || true; fi
say "wrote $out"
sed -n '/^## Load/,$p' "$out"
