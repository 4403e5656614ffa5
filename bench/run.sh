#!/usr/bin/env bash
# `npm run bench`: every benchmark under bench/, each printing its own table with
# ratios against a baseline measured in the same run. Pass names to run a subset:
#   npm run bench -- decide http dns
# TypeScript benchmarks run through tap's TypeScript loader (already installed).
set -euo pipefail
cd "$(dirname "$0")/.."
L7W_BENCH_DEPS=1 bash scripts/system-deps.sh
npx tsc -p tsconfig.json
export TS_NODE_TRANSPILE_ONLY=1
wanted=("$@")
run_one() {
  local name=$1 file=$2
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " == *" $name "* ]]; then return; fi
  echo
  echo "## bench: $name"
  case "$file" in
    *.ts) node --import=@tapjs/typescript/import "$file" ;;
    *.sh) bash "$file" ;;
  esac
}
for f in bench/*.ts bench/*.sh; do
  [ -e "$f" ] || continue
  base=$(basename "$f"); name=${base%.*}
  case "$name" in run|lib-*|_*) continue ;; esac
  run_one "$name" "$f"
done
