#!/usr/bin/env bash
# Cost of flow logging (GitHub issue 5): the HTTP benchmark (bench/http.ts, target
# proxy-1: the Star Wars L7 policy) and the DNS benchmark (bench/dns.ts, proxy-1)
# each run with the flow log off and then writing every record to a file (batched,
# off the request path). Short runs; the table at the end compares req/s and qps.
# Target: flows cost at most 10 % of throughput.
#   FLOWS_BENCH_SECONDS (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json   # bench/http.ts runs the proxy from dist/
S=${FLOWS_BENCH_SECONDS:-3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export TS_NODE_TRANSPILE_ONLY=1
run_http() { HTTP_BENCH_SECONDS=$S HTTP_BENCH_TARGETS=proxy-1 HTTP_BENCH_FLOW_LOG=$1 node --import=@tapjs/typescript/import bench/http.ts; }
run_dns() { DNS_BENCH_SECONDS=$S DNS_BENCH_ROUNDS=1 DNS_BENCH_LAT_SECONDS=1 DNS_BENCH_TARGETS=proxy-1 DNS_BENCH_FLOW_LOG=$1 node --import=@tapjs/typescript/import bench/dns.ts; }
echo "## HTTP, flow log off";  run_http ""                    | tee "$out/http-off"
echo "## HTTP, flow log on";   run_http "$out/http-flows.json" | tee "$out/http-on"
echo "## DNS, flow log off";   run_dns ""                     | tee "$out/dns-off"
echo "## DNS, flow log on";    run_dns "$out/dns-flows.json"   | tee "$out/dns-on"
echo
echo "flow records written: HTTP $(wc -l < "$out/http-flows.json" 2>/dev/null || echo 0), DNS $(wc -l < "$out/dns-flows.json" 2>/dev/null || echo 0)"
# The proxy-1 rows of each table, off vs on: req/s (HTTP) / qps median (DNS) and target CPU µs per request.
node -e '
const fs = require("fs");
const d = process.argv[1];
const table = (f) => {
  const lines = fs.readFileSync(f, "utf8").split("\n").filter((l) => l.startsWith("|"));
  const head = lines[0].split("|").map((c) => c.trim());
  return lines.filter((l) => /^\| proxy-1 /.test(l)).map((l) => {
    const c = l.split("|").map((x) => x.trim());
    const col = (re) => Number((c[head.findIndex((h) => re.test(h))] || "").replace(/,/g, ""));
    return { name: `${c[1]} ${c[2]}`, rate: col(/^(req\/s|qps median)$/), cpu: col(/^target CPU/) };
  });
};
console.log("| benchmark | row | rate off | rate on | rate cost | CPU µs/req off | on | CPU cost |");
console.log("|---|---|---:|---:|---:|---:|---:|---:|");
for (const k of ["http", "dns"]) {
  const off = table(`${d}/${k}-off`), on = table(`${d}/${k}-on`);
  for (let i = 0; i < Math.min(off.length, on.length); i++) {
    const a = off[i], b = on[i];
    const pc = (x, y) => `${((y / x - 1) * 100).toFixed(1)} %`;
    console.log(`| ${k} | ${a.name} | ${a.rate} | ${b.rate} | ${pc(a.rate, b.rate)} | ${a.cpu} | ${b.cpu} | ${pc(a.cpu, b.cpu)} |`);
  }
}' "$out"
