#!/usr/bin/env bash
# Cost of flow logging (GitHub issue 5): the HTTP benchmark (bench/http.ts, target
# proxy-1: the Star Wars L7 policy) and the DNS benchmark (bench/dns.ts, proxy-1)
# each run with the flow log off and then writing every record to a file (batched,
# off the request path). Short runs; the table at the end compares req/s and qps.
# Target: flows cost at most 10 % of throughput.
#   FLOWS_BENCH_SECONDS (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
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
# The proxy-1 rows of each table, off vs on (first numeric column = req/s or qps).
node -e '
const fs = require("fs");
const rows = (f) => fs.readFileSync(f, "utf8").split("\n").filter((l) => /proxy-1\b/.test(l));
const num = (l) => Number((l.replace(/proxy-1\S*/, "").match(/[\d.]+/) || ["NaN"])[0]);
const d = process.argv[1];
console.log("| benchmark | row | flows off | flows on | cost |");
console.log("|---|---|---|---|---|");
for (const k of ["http", "dns"]) {
  const off = rows(`${d}/${k}-off`), on = rows(`${d}/${k}-on`);
  for (let i = 0; i < Math.min(off.length, on.length); i++) {
    const a = num(off[i]), b = num(on[i]);
    console.log(`| ${k} | ${off[i].trim().split(/\s*\|\s*|\s{2,}/).filter(Boolean).slice(0, 2).join(" ")} | ${a} | ${b} | ${((1 - b / a) * 100).toFixed(1)} % |`);
  }
}' "$out"
