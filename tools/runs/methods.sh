#!/usr/bin/env bash
# Every base loss: five single-length models (`--mode single`) against one `full` run, over
# several seeds, one run directory per (method, mode, seed):
#   tools/runs/methods.sh XTASK OUT_DIR "0 1 2" [METHOD ...] [-- EXTRA TRAIN FLAGS]
# writes OUT_DIR/METHOD-MODE/seed-S with `--protocol fmnist --backend cpu` (30 epochs, the final
# model; the default flags of `xtask train`). Seed-major order, so seed 0 of every method finishes
# first; an existing run directory is kept, so an interrupted sweep resumes where it stopped.
# Without METHODs, all twelve. A model whose codes collapse (every item one code) is kept and its
# figures recorded (`--on-collapse keep`; metrics.json lists the lengths): the comparison counts a
# collapse as the failure it is instead of stopping. Summarise with tools/runs/methods_table.py.
set -euo pipefail
xtask=$1 out=$2 seeds=$3
shift 3
methods=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  methods+=("$1")
  shift
done
[ "${1:-}" = "--" ] && shift
if [ ${#methods[@]} -eq 0 ]; then
  methods=(csq dpn dsh dhn dbdh dpsh hashnet dch dtsh lcdsh shcir mdsh)
fi
here=$(dirname "$0")
for s in $seeds; do
  for m in "${methods[@]}"; do
    for mode in single full; do
      "$here/seeds.sh" "$xtask" "$out/$m-$mode" "$s" \
        --protocol fmnist --backend cpu --method "$m" --mode "$mode" --on-collapse keep "$@"
    done
  done
done
