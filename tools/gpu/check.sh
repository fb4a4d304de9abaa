#!/usr/bin/env bash
# On a lent GPU machine (the library's `device` tool), from the repository's root, with .gpu/ from
# tools/gpu/prepare.sh and, where the machine has no Vulkan loader, the loaders in .gl/ (the device
# tool's README says how to fetch them): the GPU parity and training tests on the real device,
# then the GPU benches side by side with the CPU's. Logs go to $OUT (or /tmp/gpu-check).
#
#     tools/gpu/check.sh [EPOCHS]      # EPOCHS per model for `bench train` (default 3)
set -uo pipefail
out=${OUT:-/tmp/gpu-check}
epochs=${1:-3}
mkdir -p "$out"
: > "$out/tests.log"
if [ -d .gl ] && ! ldconfig -p | grep -q libvulkan; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
bin=/tmp/nhl-gpu-bin
rm -rf "$bin" && mkdir -p "$bin" && tar -xzf .gpu/bin.tar.gz -C "$bin" --strip-components=1 || exit 1
export NHL_REQUIRE_GPU=1
status=0
for t in "$bin"/test-*; do
  echo "== ${t##*/}" >> "$out/tests.log"
  "$t" >> "$out/tests.log" 2>&1
  rc=$?
  echo "== ${t##*/}: exit $rc" | tee -a "$out/tests.log"
  [ "$rc" -eq 0 ] || status=1
done
grep -E "^test result|FAILED|panicked" "$out/tests.log"
"$bin"/kernels --bench 'objectives/|matmul' 2>&1 | tee "$out/bench.log" | grep -E "GPU benches on|time:|^objectives|^matmul" || true
for backend in gpu cpu; do
  "$bin"/xtask bench train --backend "$backend" --method csq,dhn --modes full,single \
    --epochs "$epochs" 2>&1 | tee "$out/train-$backend.log" | grep -E "median over epochs|^Error" || true
done
exit $status
