#!/usr/bin/env python3
"""Time FAISS IndexBinaryFlat on the codes written by `cargo xtask bench search --write-codes DIR`.

Both sides read the same .npy files (uint8 [n, bytes], the FAISS binary layout), so the numbers
can be put side by side. Single-threaded by default, like the figure the nhl-index target quotes.

    python3 benches/faiss_compare.py DIR --n 1000000 --bits 64,128 --k 10,100 --threads 1

With `--nhl BIN` (the xtask binary, e.g. target/release/xtask) every repetition runs FAISS and
then `BIN search` on the same files and settings, alternately, so that both see the same load on a
shared machine; ours is timed by its own `search_seconds` (the search alone, codes in memory). The
speed-up is the ratio of the two fastest repetitions, in wall time and in CPU time (the CPU ratio
is the steadier one when other jobs share the cores).
"""
import argparse
import json
import pathlib
import subprocess
import tempfile
import time

import faiss
import numpy as np


def nhl_seconds(binary, db_path, q_path, k, threads):
    """One run of `xtask search`: wall and CPU seconds of its search alone, and its ISA."""
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([binary, "search", "--database", str(db_path), "--queries", str(q_path),
                        "--k", str(k), "--threads", str(threads), "--out", out],
                       check=True, stdout=subprocess.DEVNULL)
        summary = json.loads((pathlib.Path(out) / "search.json").read_text())
    return summary["search_seconds"], summary["search_cpu_seconds"], summary["isa"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=pathlib.Path)
    p.add_argument("--n", default="1000000")
    p.add_argument("--bits", default="64,128")
    p.add_argument("--k", default="10,100")
    p.add_argument("--threads", default="1")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--nhl", help="xtask binary to time alternately with FAISS")
    a = p.parse_args()
    print(f"faiss {faiss.__version__}")
    # CPU time beside wall time: on a shared machine wall time includes other processes' turns.
    header = f"{'n':>10} {'bits':>5} {'k':>4} {'thr':>3} {'seconds':>10} {'qps':>12} {'ns/pair':>9} {'cpu ns/pair':>12}"
    if a.nhl:
        header += (f" {'nhl seconds':>12} {'nhl ns/pair':>12} {'nhl cpu ns/pair':>16} {'speed-up':>9}"
                   f" {'cpu speed-up':>13} {'nhl isa':>8}")
    print(header)
    for bits in map(int, a.bits.split(",")):
        q_path = a.dir / f"queries_{bits}.npy"
        q = np.load(q_path)
        for n in map(int, a.n.split(",")):
            db_path = a.dir / f"database_{n}_{bits}.npy"
            db = np.load(db_path)
            index = faiss.IndexBinaryFlat(bits)
            index.add(db)
            for threads in map(int, a.threads.split(",")):
                faiss.omp_set_num_threads(threads)
                for k in map(int, a.k.split(",")):
                    best, best_cpu, ours, ours_cpu, isa = (float("inf"),) * 4 + (None,)
                    for _ in range(a.repeat):
                        c = time.process_time()
                        t = time.perf_counter()
                        index.search(q, k)
                        wall = time.perf_counter() - t
                        cpu = time.process_time() - c
                        best, best_cpu = min(best, wall), min(best_cpu, cpu)
                        if a.nhl:
                            seconds, cpu, isa = nhl_seconds(a.nhl, db_path, q_path, k, threads)
                            ours, ours_cpu = min(ours, seconds), min(ours_cpu, cpu)
                    nq = q.shape[0]
                    line = (f"{n:>10} {bits:>5} {k:>4} {threads:>3} {best:>10.4f} {nq / best:>12.1f} "
                            f"{best * 1e9 / (nq * n):>9.4f} {best_cpu * 1e9 / (nq * n):>12.4f}")
                    record = {"n": n, "bits": bits, "k": k, "threads": threads, "queries": nq,
                              "seconds": best, "cpu_seconds": best_cpu, "qps": nq / best}
                    if a.nhl:
                        pairs = nq * n
                        line += (f" {ours:>12.4f} {ours * 1e9 / pairs:>12.4f} {ours_cpu * 1e9 / pairs:>16.4f}"
                                 f" {best / ours:>9.2f} {best_cpu / ours_cpu:>13.2f} {isa:>8}")
                        record.update({"nhl_seconds": ours, "nhl_cpu_seconds": ours_cpu, "nhl_isa": isa,
                                       "speedup": best / ours, "cpu_speedup": best_cpu / ours_cpu})
                    print(line)
                    print("json", json.dumps(record))


if __name__ == "__main__":
    main()
