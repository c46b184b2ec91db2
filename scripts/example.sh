#!/usr/bin/env bash
# The built-in local example: what `doppel exec` does, shown on this machine without a cluster.
#
# It makes two throw-away network namespaces:
#   pod     a "pod" with a service, greeter.demo.svc.cluster.local (HTTP on 10.77.0.80:80), and a
#           DNS server (dnsmasq on 10.77.0.53) that only exist inside it, plus a pod process whose
#           /etc/resolv.conf searches demo.svc.cluster.local, so that `greeter` resolves there;
#   laptop  a "laptop" with loopback only: nothing of the pod is reachable from it.
# Then it runs `curl http://greeter/` in the laptop under `doppel exec --target pid:<pod process>`
# (it works), and the same command without doppel (it fails). Everything is removed on exit.
# Run as root: sudo make example
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "example: doppel exec needs root for a local target; run: sudo make example" >&2
  exit 1
fi
# doppel runs the program as the user who called sudo; without sudo, as nobody.
export SUDO_UID=${SUDO_UID:-65534} SUDO_GID=${SUDO_GID:-65534} SUDO_USER=${SUDO_USER:-nobody}

if [[ -t 1 ]]; then
  say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
  say() { printf '\n==> %s\n' "$*"; }
fi

say "installing dependencies and building doppel"
scripts/deps.sh
make --no-print-directory build
doppel=$PWD/bin/doppel

id=dpl-example-$$
pod=$id-pod
laptop=$id-laptop
work=$(mktemp -d "/tmp/$id-XXXXXX")
chmod 755 "$work"
pids=()
namespaces=()

cleanup() {
  set +e
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  for ns in "${namespaces[@]}"; do ip netns delete "$ns"; done
  rm -rf "/etc/netns/$pod" "/etc/netns/$laptop" "$work"
  echo "example: removed the namespaces, processes and files it made"
}
trap cleanup EXIT

say "making the pod namespace ($pod) and the laptop namespace ($laptop)"
for ns in "$pod" "$laptop"; do
  ip netns add "$ns"
  namespaces+=("$ns")
  ip -n "$ns" link set lo up
done
# The pod's addresses: the greeter service and its DNS server.
ip -n "$pod" addr add 10.77.0.80/32 dev lo
ip -n "$pod" addr add 10.77.0.53/32 dev lo

# `ip netns exec NAME` shows the files in /etc/netns/NAME/ as /etc/<file>.
mkdir -p "/etc/netns/$pod" "/etc/netns/$laptop"
cat >"/etc/netns/$pod/resolv.conf" <<RESOLV
search demo.svc.cluster.local svc.cluster.local cluster.local
nameserver 10.77.0.53
options ndots:5
RESOLV
printf '127.0.0.1\tlocalhost\n' >"/etc/netns/$pod/hosts"
echo greeter-7f9c-pod >"/etc/netns/$pod/hostname"
# The laptop asks a nameserver on its own loopback, where nothing answers.
echo "nameserver 127.0.0.1" >"/etc/netns/$laptop/resolv.conf"

say "starting the greeter service (HTTP) and its DNS server (dnsmasq) inside the pod"
mkdir "$work/www"
echo "hello from the pod" >"$work/www/index.html"
ip netns exec "$pod" /usr/bin/python3 -m http.server 80 --bind 10.77.0.80 --directory "$work/www" \
  >"$work/http.log" 2>&1 &
pids+=($!)
ip netns exec "$pod" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
  --bind-interfaces --listen-address=10.77.0.53 --pid-file="$work/dnsmasq.pid" \
  --user=nobody --group=nogroup --local=/cluster.local/ \
  --host-record=greeter.demo.svc.cluster.local,10.77.0.80 >"$work/dnsmasq.log" 2>&1 &
pids+=($!)
# The pod process: what doppel targets. Its own hostname, environment and /etc files.
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin GREETING_LANG=en \
  ip netns exec "$pod" unshare --uts sh -c 'hostname greeter-7f9c-pod && exec sleep infinity' &
pod_pid=$!
pids+=("$pod_pid")

for _ in $(seq 50); do
  if ip netns exec "$pod" curl -fsS --max-time 1 http://greeter/ >/dev/null 2>&1; then
    break
  fi
  sleep 0.1
done
if ! ip netns exec "$pod" curl -fsS --max-time 1 http://greeter/ >/dev/null; then
  echo "example: the greeter service did not come up; logs:" >&2
  cat "$work/http.log" "$work/dnsmasq.log" >&2
  exit 1
fi
echo "pod process: pid $pod_pid (hostname greeter-7f9c-pod, GREETING_LANG=en)"

program='echo "running as $(id -un) on $(hostname), GREETING_LANG=${GREETING_LANG:-unset}"; getent hosts greeter; curl -sS --max-time 10 http://greeter/'

say "in the laptop, under doppel: doppel exec --target pid:$pod_pid -- sh -c '...curl http://greeter/'"
with=0
ip netns exec "$laptop" "$doppel" exec --target "pid:$pod_pid" -- sh -c "$program" || with=$?

say "in the laptop, without doppel: the same program (it should fail)"
without=0
ip netns exec "$laptop" setpriv --reuid="$SUDO_UID" --regid="$SUDO_GID" --clear-groups -- \
  sh -c "$program" || without=$?

say "result"
if [[ $with -eq 0 && $without -ne 0 ]]; then
  echo "With doppel the laptop program resolved greeter with the pod's DNS, reached the pod's"
  echo "service, and saw the pod's hostname and environment; without doppel it could not."
  exit 0
fi
echo "example FAILED: with doppel exit $with (want 0), without doppel exit $without (want non-zero)" >&2
exit 1
