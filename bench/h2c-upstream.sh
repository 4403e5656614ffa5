#!/usr/bin/env bash
# l7warden pass-through (no policy) in front of an h2c:// upstream (a gRPC-like
# node:http2 server, bench/lib-h2c-upstream.ts): h2load -c8 -m16, gRPC-like POSTs
# with a 7-byte body, over h2c and (H2C_BENCH_H1=1) HTTP/1.1. Prints req/s and the
# proxy's CPU µs per request (from /proc/<pid>/stat) per round, then medians.
# A/B: L7W_ROOT=<another checkout> runs that tree's proxy (same upstream, load).
# Pinned like bench/http.ts: load on cpu0, proxy and upstream on cpu1.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
root=${L7W_ROOT:-$here}
rounds=${H2C_BENCH_ROUNDS:-5}
secs=${H2C_BENCH_SECONDS:-4}
command -v h2load >/dev/null || { echo "h2load missing: run L7W_BENCH_DEPS=1 bash scripts/system-deps.sh" >&2; exit 1; }
pin() { if [ "$(nproc)" -ge 2 ]; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
export TS_NODE_TRANSPILE_ONLY=1
wait_port() { # file regex
  for _ in $(seq 300); do
    p=$(grep -oE "$2" "$1" | grep -oE '[0-9]+$' | head -1 || true)
    [ -n "$p" ] && { echo "$p"; return; }
    sleep 0.1
  done
  echo "no port in $1" >&2; cat "$1" >&2; exit 1
}
(cd "$here" && exec taskset -c 1 node --import=@tapjs/typescript/import bench/lib-h2c-upstream.ts) >"$tmp/up.log" 2>&1 &
pids+=($!)
up=$(wait_port "$tmp/up.log" 'h2c [0-9]+')
mkdir -p "$tmp/cfg"
cat >"$tmp/cfg/pods.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: { name: deathstar, namespace: default, labels: { org: empire, class: deathstar } }
spec: { containers: [{ name: d, image: x, ports: [{ containerPort: 80 }] }] }
status: { podIP: 127.0.0.20 }
YAML
cat >"$tmp/cfg/proxy.yaml" <<YAML
apiVersion: l7warden.io/v1alpha1
kind: ProxyConfig
metadata: { name: bench-h2c }
spec:
  listeners:
  - name: deathstar
    mode: ingress
    address: 127.0.0.1:0
    endpoint: { namespace: default, pod: deathstar }
    upstream: h2c://127.0.0.1:${up}
    endpointPort: 80
YAML
(cd "$root" && exec taskset -c 1 node --import=@tapjs/typescript/import src/cli/main.ts run --config "$tmp/cfg") >"$tmp/proxy.log" 2>&1 &
proxy=$!
pids+=($proxy)
port=$(wait_port "$tmp/proxy.log" 'on [0-9.]+:[0-9]+')
printf 'xxxxxxx' >"$tmp/body"
ticks() { awk '{print $14 + $15}' "/proc/$proxy/stat"; }
url="http://127.0.0.1:${port}/bench.Svc/Call"
args=(-c8 -m16 -d "$tmp/body" -H 'content-type: application/grpc' -H 'te: trailers')
[ "${H2C_BENCH_H1:-0}" = 1 ] && args=(--h1 "${args[@]}")
pin 0 h2load "${args[@]}" -D1 "$url" >/dev/null # warm-up
echo "proxy from $root; upstream h2c; $(uptime)"
rps_all=(); cpu_all=()
for r in $(seq "$rounds"); do
  t1=$(ticks)
  out=$(pin 0 h2load "${args[@]}" -D"$secs" "$url")
  t2=$(ticks)
  done_n=$(echo "$out" | sed -nE 's/^requests: [0-9]+ total, [0-9]+ started, ([0-9]+) done, ([0-9]+) succeeded.*/\1/p')
  ok=$(echo "$out" | sed -nE 's/^requests: [0-9]+ total, [0-9]+ started, [0-9]+ done, ([0-9]+) succeeded.*/\1/p')
  rps=$(echo "$out" | sed -nE 's/^finished in [0-9.]+m?s, ([0-9.]+) req\/s.*/\1/p')
  cpu=$(awk -v a="$t1" -v b="$t2" -v n="$done_n" 'BEGIN { printf "%.1f", (b - a) / 100 * 1e6 / n }')
  echo "round $r: $rps req/s, $cpu µs CPU/req ($ok/$done_n succeeded)"
  rps_all+=("$rps"); cpu_all+=("$cpu")
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median: $(med "${rps_all[@]}") req/s, $(med "${cpu_all[@]}") µs CPU/req"
