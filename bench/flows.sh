#!/usr/bin/env bash
# Cost of flow logging (GitHub issue 5): the HTTP benchmark (bench/http.ts, target
# proxy-1: the Star Wars L7 policy) and the DNS benchmark (bench/dns.ts, proxy-1)
# each run with the flow log off and then writing every record to a file (batched,
# off the request path). Rounds are interleaved (off, on, off, on, … for each
# benchmark) so that a neighbour's load or a thermal drift hits both sides alike;
# the table at the end gives the medians over the rounds of req/s / qps and of the
# proxy's CPU µs per request (the steadier number on a shared machine).
# Target: flows cost at most 10 % of throughput. Sequential runs on this VM drift by
# ±20 %: bench/pairs.ts measures the same cost with both proxies loaded at once, the
# number to read against the target.
#   FLOWS_BENCH_SECONDS (default 3)   length of each timed run
#   FLOWS_BENCH_ROUNDS  (default 3)   interleaved off/on rounds, medians reported
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json   # bench/http.ts runs the proxy from dist/
S=${FLOWS_BENCH_SECONDS:-3}
R=${FLOWS_BENCH_ROUNDS:-3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export TS_NODE_TRANSPILE_ONLY=1
run_http() { HTTP_BENCH_SECONDS=$S HTTP_BENCH_ROUNDS=1 HTTP_BENCH_TARGETS=proxy-1 HTTP_BENCH_FLOW_LOG=$1 node --import=@tapjs/typescript/import bench/http.ts; }
run_dns() { DNS_BENCH_SECONDS=$S DNS_BENCH_ROUNDS=1 DNS_BENCH_LAT_SECONDS=1 DNS_BENCH_TARGETS=proxy-1 DNS_BENCH_FLOW_LOG=$1 node --import=@tapjs/typescript/import bench/dns.ts; }
echo "load before: $(uptime)"
for r in $(seq 1 "$R"); do
  for k in http dns; do
    echo "## round $r/$R, $k, flow log off"; run_$k ""                      | tee "$out/$k-off.$r"
    echo "## round $r/$R, $k, flow log on";  run_$k "$out/$k-flows.$r.json" | tee "$out/$k-on.$r"
    echo "flow records written ($k, round $r): $(wc -l < "$out/$k-flows.$r.json" 2>/dev/null || echo 0)" | tee "$out/$k-count.$r"
    rm -f "$out/$k-flows.$r.json"
  done
done
echo "load after: $(uptime)"
echo
# The proxy-1 rows of each table, off vs on, medians over the rounds: req/s (HTTP) /
# qps median (DNS) and target CPU µs per request; records/s = 2 × the "on" rate
# (a request and a response record per request / query).
node -e '
const fs = require("fs");
const [d, R] = [process.argv[1], Number(process.argv[2])];
const table = (f) => {
  const lines = fs.readFileSync(f, "utf8").split("\n").filter((l) => l.startsWith("|"));
  const head = lines[0].split("|").map((c) => c.trim());
  return lines.filter((l) => /^\| proxy-1 /.test(l)).map((l) => {
    const c = l.split("|").map((x) => x.trim());
    const col = (re) => Number((c[head.findIndex((h) => re.test(h))] || "").replace(/,/g, ""));
    return { name: `${c[1]} ${c[2]}`, rate: col(/^(req\/s|qps median)$/), cpu: col(/^target CPU/) };
  });
};
const median = (xs) => { const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b); if (!s.length) return NaN; const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const fmt = (x, dp = 0) => (Number.isFinite(x) ? x.toFixed(dp) : "–");
console.log(`${R} interleaved round(s), medians; per-round values in brackets`);
console.log("| benchmark | row | rate off | rate on | rate cost | CPU µs/req off | on | CPU cost | records/s |");
console.log("|---|---|---:|---:|---:|---:|---:|---:|---:|");
for (const k of ["http", "dns"]) {
  const rounds = [];
  for (let r = 1; r <= R; r++) {
    try { rounds.push({ off: table(`${d}/${k}-off.${r}`), on: table(`${d}/${k}-on.${r}`) }); } catch {}
  }
  if (!rounds.length) continue;
  const n = Math.min(...rounds.map((x) => Math.min(x.off.length, x.on.length)));
  for (let i = 0; i < n; i++) {
    const pick = (side, f) => rounds.map((x) => x[side][i][f]);
    const ro = median(pick("off", "rate")), rn = median(pick("on", "rate"));
    const co = median(pick("off", "cpu")), cn = median(pick("on", "cpu"));
    const pc = (x, y) => `${((y / x - 1) * 100).toFixed(1)} %`;
    const br = (xs, dp) => ` [${xs.map((x) => fmt(x, dp)).join(", ")}]`;
    console.log(`| ${k} | ${rounds[0].off[i].name} | ${fmt(ro)}${br(pick("off", "rate"))} | ${fmt(rn)}${br(pick("on", "rate"))} | ${pc(ro, rn)} | ${fmt(co, 1)}${br(pick("off", "cpu"), 1)} | ${fmt(cn, 1)}${br(pick("on", "cpu"), 1)} | ${pc(co, cn)} | ${fmt(2 * rn)} |`);
  }
}' "$out" "$R"
