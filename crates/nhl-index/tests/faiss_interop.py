#!/usr/bin/env python3
"""The FAISS side of `faiss_interop.rs`: run by that test with the Python of a virtual environment
that has `faiss-cpu` and `numpy`.

    python faiss_interop.py DIR

1. Checks every case `ours_*` that the Rust test wrote into DIR: `NAME.index` (our writer),
   `NAME.codes.npy` (uint8 [n, d/8]), `NAME.queries.npy`, optionally `NAME.ids.npy`, and our
   k-nearest-neighbour result `NAME.distances.npy` (int32 [nq, k]) and `NAME.labels.npy` (int64,
   the IDs of the ID map, else row numbers). `faiss.read_index_binary` must load the file as an
   IndexBinaryFlat (or an IndexBinaryIDMap around one) holding those codes and IDs, and its
   `search` must return our distances; its labels must be a valid answer (see `check_labels`).
2. Checks the bit order: `faiss.real_to_binary` of `signs.values.npy` gives `signs.codes.npy`,
   which our `Codes::from_signs` packed.
3. Writes cases `faiss_*` in the same form, this time the index written by FAISS and the result
   found by FAISS, for the Rust test to read; and `refuse_*.index`, index types our reader refuses.

Exits with an AssertionError naming the case on the first mismatch.
"""
import pathlib
import sys

import faiss
import numpy as np

K = 10


def true_distances(queries, codes):
    """Hamming distances [nq, n] by brute force in NumPy, independent of both libraries."""
    return np.unpackbits(queries[:, None, :] ^ codes[None, :, :], axis=-1).sum(axis=-1)


def check_labels(name, labels, ours, distances, queries, codes, ids):
    """`labels` (FAISS) and `ours` are both correct k-nearest-neighbour answers with the
    distances `distances`: the same labels below each query's k-th distance, and at the k-th
    distance (where either side may pick among ties) only items that are at that distance."""
    row_of = {label: row for row, label in enumerate(ids)}
    truth = true_distances(queries, codes)
    for q in range(len(queries)):
        kth = distances[q, -1]
        for side, found in (("faiss", labels[q]), ("ours", ours[q])):
            assert len(set(found)) == len(found), f"{name}: query {q}: {side} repeats a label"
            for label, d in zip(found, distances[q]):
                assert truth[q, row_of[label]] == d, (
                    f"{name}: query {q}: {side} gives label {label} at distance {d}, "
                    f"its distance is {truth[q, row_of[label]]}")
        inner = lambda found: {l for l, d in zip(found, distances[q]) if d < kth}
        assert inner(labels[q]) == inner(ours[q]), f"{name}: query {q}: labels differ below the k-th distance"


def check_ours(path):
    name = path.name[: -len(".index")]
    load = lambda part: np.load(path.parent / f"{name}.{part}.npy")
    codes, queries = load("codes"), load("queries")
    ids_path = path.parent / f"{name}.ids.npy"
    ids = np.load(ids_path) if ids_path.exists() else None

    index = faiss.read_index_binary(str(path))
    if ids is None:
        assert type(index) is faiss.IndexBinaryFlat, f"{name}: loaded as {type(index).__name__}"
        flat = index
    else:
        assert type(index) is faiss.IndexBinaryIDMap, f"{name}: loaded as {type(index).__name__}"
        assert np.array_equal(faiss.vector_to_array(index.id_map), ids), f"{name}: id_map differs"
        flat = faiss.downcast_IndexBinary(index.index)
        assert type(flat) is faiss.IndexBinaryFlat, f"{name}: wraps {type(flat).__name__}"
    n, code_size = codes.shape
    assert (index.d, index.code_size, index.ntotal) == (8 * code_size, code_size, n), (
        f"{name}: d, code_size, ntotal = {index.d}, {index.code_size}, {index.ntotal}")
    if n > 0:
        assert np.array_equal(flat.reconstruct_n(0, n), codes), f"{name}: the stored codes differ"
    if n < K:
        return name
    distances, labels = index.search(queries, K)
    ours = load("distances")
    assert np.array_equal(distances, ours), f"{name}: distances differ from ours"
    check_labels(name, labels, load("labels"), distances, queries, codes,
                 np.arange(n) if ids is None else ids)
    return name


def check_bit_order(folder):
    values = np.load(folder / "signs.values.npy")
    expected = np.load(folder / "signs.codes.npy")
    packed = np.zeros((values.shape[0], values.shape[1] // 8), dtype=np.uint8)
    faiss.real_to_binary(values.size, faiss.swig_ptr(values), faiss.swig_ptr(packed))
    assert np.array_equal(packed, expected), "real_to_binary packs signs unlike Codes::from_signs"


def write_case(folder, name, index, codes, queries, ids=None):
    """Save a FAISS-written case: the index, its codes and IDs, and FAISS's own search result."""
    faiss.write_index_binary(index, str(folder / f"{name}.index"))
    np.save(folder / f"{name}.codes.npy", codes)
    np.save(folder / f"{name}.queries.npy", queries)
    if ids is not None:
        np.save(folder / f"{name}.ids.npy", ids)
    if len(codes) >= K:
        distances, labels = index.search(queries, K)
        np.save(folder / f"{name}.distances.npy", distances)
        np.save(folder / f"{name}.labels.npy", labels)


def write_faiss_cases(folder):
    rng = np.random.default_rng(20240613)
    for bits, n in ((8, 300), (24, 300), (64, 257), (136, 300), (1024, 120), (16, 0)):
        codes = rng.integers(0, 256, size=(n, bits // 8), dtype=np.uint8)
        queries = rng.integers(0, 256, size=(17, bits // 8), dtype=np.uint8)
        flat = faiss.IndexBinaryFlat(bits)
        flat.add(codes)
        write_case(folder, f"faiss_flat_{bits}", flat, codes, queries)
        ids = rng.permutation(n).astype(np.int64) * 1_000_003 - 5 * 10**11  # distinct, some negative
        mapped = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(bits))
        mapped.add_with_ids(codes, ids)
        write_case(folder, f"faiss_idmap_{bits}", mapped, codes, queries, ids)

    codes = rng.integers(0, 256, size=(200, 8), dtype=np.uint8)
    hnsw = faiss.IndexBinaryHNSW(64, 8)
    hnsw.add(codes)
    faiss.write_index_binary(hnsw, str(folder / "refuse_hnsw.index"))
    quantizer = faiss.IndexBinaryFlat(64)
    ivf = faiss.IndexBinaryIVF(quantizer, 64, 4)
    ivf.train(codes)
    ivf.add(codes)
    faiss.write_index_binary(ivf, str(folder / "refuse_ivf.index"))
    wrapped = faiss.IndexBinaryIDMap(faiss.IndexBinaryHNSW(64, 8))
    wrapped.add_with_ids(codes, np.arange(200, dtype=np.int64))
    faiss.write_index_binary(wrapped, str(folder / "refuse_idmap_hnsw.index"))
    floats = faiss.IndexFlatL2(8)
    floats.add(rng.standard_normal((5, 8)).astype(np.float32))
    faiss.write_index(floats, str(folder / "refuse_float.index"))


def main():
    folder = pathlib.Path(sys.argv[1])
    checked = [check_ours(path) for path in sorted(folder.glob("ours_*.index"))]
    assert checked, f"no ours_*.index in {folder}"
    check_bit_order(folder)
    write_faiss_cases(folder)
    print(f"faiss {faiss.__version__}: checked {', '.join(checked)} and the bit order; wrote the FAISS cases")


if __name__ == "__main__":
    main()
