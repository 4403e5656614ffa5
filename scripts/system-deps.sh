#!/usr/bin/env bash
# Installs the Debian tools the tests drive for real (dig, curl, openssl, haproxy)
# when they are missing. Runs before `npm test`; a no-op when everything is there.
set -u
need=()
command -v dig >/dev/null 2>&1 || need+=(dnsutils)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# test/ops/examples.test.ts runs examples/node-local behind a real HAProxy (send-proxy-v2).
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
if [ "${L7W_BENCH_DEPS:-}" = 1 ]; then
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
  command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
  command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing ${need[*]} and cannot apt-get install them (need root on Debian)" >&2
  exit 1
fi
echo "system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null
