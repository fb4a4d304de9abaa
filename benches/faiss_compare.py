#!/usr/bin/env python3
"""Time FAISS IndexBinaryFlat on the codes written by `cargo xtask bench search --write-codes DIR`.

Both sides read the same .npy files (uint8 [n, bytes], the FAISS binary layout), so the numbers
can be put side by side. Single-threaded by default, like the figure the nhl-index target quotes.

    python3 benches/faiss_compare.py DIR --n 1000000 --bits 64,128 --k 10,100 --threads 1
"""
import argparse
import json
import pathlib
import time

import faiss
import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=pathlib.Path)
    p.add_argument("--n", default="1000000")
    p.add_argument("--bits", default="64,128")
    p.add_argument("--k", default="10,100")
    p.add_argument("--threads", default="1")
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args()
    print(f"faiss {faiss.__version__}")
    # CPU time beside wall time: on a shared machine wall time includes other processes' turns.
    print(f"{'n':>10} {'bits':>5} {'k':>4} {'thr':>3} {'seconds':>10} {'qps':>12} {'ns/pair':>9} {'cpu ns/pair':>12}")
    for bits in map(int, a.bits.split(",")):
        q = np.load(a.dir / f"queries_{bits}.npy")
        for n in map(int, a.n.split(",")):
            db = np.load(a.dir / f"database_{n}_{bits}.npy")
            index = faiss.IndexBinaryFlat(bits)
            index.add(db)
            for threads in map(int, a.threads.split(",")):
                faiss.omp_set_num_threads(threads)
                for k in map(int, a.k.split(",")):
                    best, best_cpu = float("inf"), float("inf")
                    for _ in range(a.repeat):
                        c = time.process_time()
                        t = time.perf_counter()
                        index.search(q, k)
                        wall = time.perf_counter() - t
                        if wall < best:
                            best, best_cpu = wall, time.process_time() - c
                    nq = q.shape[0]
                    print(f"{n:>10} {bits:>5} {k:>4} {threads:>3} {best:>10.4f} {nq / best:>12.1f} "
                          f"{best * 1e9 / (nq * n):>9.4f} {best_cpu * 1e9 / (nq * n):>12.4f}")
                    print("json", json.dumps({"n": n, "bits": bits, "k": k, "threads": threads, "queries": nq,
                                              "seconds": best, "cpu_seconds": best_cpu, "qps": nq / best}))


if __name__ == "__main__":
    main()
