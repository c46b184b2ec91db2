#!/usr/bin/env bash
# Installs what doppel's build, tests and example need on Debian, and downloads the Go modules.
# Idempotent and fast when everything is present: apt-get runs only for missing packages.
# Run as root (CI is root): sudo scripts/deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests and the example run:
#   iproute2 (ip netns), util-linux (nsenter, unshare, setpriv), procps, hostname,
#   nginx-light and dnsmasq-base (the test cluster's services), curl, python3 (test programs),
#   nftables, iperf3, wrk, hyperfine, proxychains4, microsocks (benchmarks and comparisons),
#   ca-certificates, make.
packages=(
  iproute2 util-linux procps hostname make curl ca-certificates python3
  nginx-light dnsmasq-base nftables iperf3 wrk hyperfine proxychains4 microsocks
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: missing Debian packages: ${missing[*]}; run as root: sudo $0" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  # Keep package scripts from starting services (nginx would listen on :80 of this machine).
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
  fi
  trap 'if [[ $made_policy == 1 ]]; then rm -f "$policy"; fi' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "deps: Debian packages present"
fi

if ! command -v go >/dev/null; then
  echo "deps: the go command is not on PATH (Go 1.26 or newer is needed)" >&2
  exit 1
fi
go mod download
echo "deps: Go modules present"
