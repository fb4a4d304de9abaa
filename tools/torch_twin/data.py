"""The protocols' Fashion-MNIST splits (docs/PROTOCOL.md, "Data"), read from the IDX files, and
the float32 tensors of a safetensors file (a model or a dump of the Rust trainer)."""

import gzip
import json
import os
import struct

import numpy as np

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
REPO_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data")
QUERY_PER_CLASS = 100
TRAIN_PER_CLASS = 500
N_CLASSES = 10


def _read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = struct.unpack(">" + "I" * dims, raw[4 : 4 + 4 * dims])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _pair(directory, stem):
    images = _read_idx(os.path.join(directory, f"{stem}-images-idx3-ubyte.gz"))
    labels = _read_idx(os.path.join(directory, f"{stem}-labels-idx1-ubyte.gz"))
    return images.reshape(len(images), -1), labels.astype(np.int64)


def _blocks(labels, start, stop):
    """Items `start..stop` of each class in file order, class 0's block first."""
    return np.concatenate([np.flatnonzero(labels == c)[start:stop] for c in range(N_CLASSES)])


def _features(pixels):
    # byte / 255 in f32, as the Rust loader computes it (one correctly rounded division).
    return pixels.astype(np.float32) / np.float32(255.0)


def load(protocol):
    """`(train, query, database)`, each `(features f32 [n, 784], labels int64 [n])`."""
    if protocol == "fmnist-t10k":
        pixels, labels = _pair(REPO_DATA, "t10k")
        query = _blocks(labels, 0, QUERY_PER_CLASS)
        train = _blocks(labels, QUERY_PER_CLASS, QUERY_PER_CLASS + TRAIN_PER_CLASS)
        rest = np.setdiff1d(np.arange(len(labels)), query)
        return (
            (_features(pixels[train]), labels[train]),
            (_features(pixels[query]), labels[query]),
            (_features(pixels[rest]), labels[rest]),
        )
    if protocol == "fmnist":
        tr_pixels, tr_labels = _pair(DEBIAN_DIR, "train")
        te_pixels, te_labels = _pair(DEBIAN_DIR, "t10k")
        query = _blocks(te_labels, 0, QUERY_PER_CLASS)
        train = _blocks(tr_labels, 0, TRAIN_PER_CLASS)
        rest = np.setdiff1d(np.arange(len(te_labels)), query)
        database = np.concatenate([_features(tr_pixels), _features(te_pixels[rest])])
        database_labels = np.concatenate([tr_labels, te_labels[rest]])
        return (
            (_features(tr_pixels[train]), tr_labels[train]),
            (_features(te_pixels[query]), te_labels[query]),
            (database, database_labels),
        )
    raise ValueError(f"unknown protocol {protocol!r}; expected fmnist or fmnist-t10k")


def read_safetensors(path):
    """Every float32 tensor of a safetensors file by name, as numpy arrays."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        lo, hi = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + lo : 8 + n + hi], dtype="<f4").reshape(info["shape"])
    return out
