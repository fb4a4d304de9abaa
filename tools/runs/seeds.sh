#!/usr/bin/env bash
# One configuration of `xtask train` over several seeds, one run directory per seed:
#   tools/runs/seeds.sh XTASK OUT_DIR "0 1 2 3 4" --protocol fmnist --mode full --backend cpu
# writes OUT_DIR/seed-S for every seed S (an existing run directory is kept, so an interrupted
# sweep resumes where it stopped). Summarise with tools/runs/table.py OUT_DIR.
set -euo pipefail
xtask=$1 out=$2 seeds=$3
shift 3
mkdir -p "$out"
for s in $seeds; do
  if [ -f "$out/seed-$s/metrics.json" ]; then continue; fi
  "$xtask" train "$@" --seed "$s" --out "$out/seed-$s" > "$out/seed-$s.log" 2>&1
done
