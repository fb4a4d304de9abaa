#!/usr/bin/env bash
# Builds, on this machine, what tools/gpu/check.sh runs on a lent GPU machine, which has no Rust
# toolchain: stripped x86-64 builds of `xtask`, the criterion `kernels` bench and the test binaries
# with GPU cases, packed into .gpu/bin.tar.gz (about 30 MB, inside the device tool's 64 MiB for
# the working tree; .gpu/ is ignored by git, so name it in the device call's `carry`).
#
#     tools/gpu/prepare.sh
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
rm -rf .gpu
mkdir -p .gpu/bin
# The path of each executable cargo reports building, one per line.
executables() {
  python3 -c '
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
        print(msg["executable"])'
}
cargo build --release -p xtask
cp target/release/xtask .gpu/bin/xtask
cargo bench --bench kernels --no-run --message-format=json-render-diagnostics | executables |
  while read -r exe; do cp "$exe" .gpu/bin/kernels; done
for t in gpu_parity pairs_parity hashing_parity aliasing; do
  cargo test --release -p nhl-kernels --test "$t" --no-run --message-format=json-render-diagnostics |
    executables | while read -r exe; do cp "$exe" ".gpu/bin/test-$t"; done
done
cargo test --release -p nhl-train --test train_backends --no-run \
  --message-format=json-render-diagnostics | executables |
  while read -r exe; do cp "$exe" .gpu/bin/test-train_backends; done
strip .gpu/bin/*
tar -czf .gpu/bin.tar.gz -C .gpu bin
rm -r .gpu/bin
du -sh .gpu/bin.tar.gz
