"""Tiny synthetic CIFAR-10 datasets in the exact on-disk format, for tests that must not download anything.

The files match the official "python version": protocol-2 pickles (as Python 2 wrote them, but with the
keys as bytes, which is what ``pickle.load(..., encoding="bytes")`` returns for the real files) holding
``b"data"`` (uint8, (n, 3072)), ``b"labels"`` (a list of ints cycling 0..9) and ``b"batch_label"``;
``batches.meta`` holds ``b"label_names"``.
"""

from __future__ import annotations

import hashlib
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

BATCHES_DIRNAME = "cifar-10-batches-py"
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_batch(n: int, seed: int, *, str_keys: bool = False, label: str = "batch") -> dict[Any, Any]:
    """One batch dict: ``n`` random images and labels cycling 0..9 (so every class is present)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [i % 10 for i in range(n)]
    batch: dict[Any, Any] = {b"data": data, b"labels": labels, b"batch_label": label.encode()}
    if str_keys:
        batch = {k.decode(): v for k, v in batch.items()}
    return batch


def write_pickle(path: Path, obj: Any) -> None:
    """Write ``obj`` the way the dataset's files are written (pickle protocol 2)."""
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(
    root: Path, n_per_train_batch: int = 60, n_test: int = 50, *, str_keys: bool = False, seed: int = 0
) -> Path:
    """Write a complete synthetic ``root/cifar-10-batches-py`` and return that folder.

    Five training batches of ``n_per_train_batch`` images each, a test batch of ``n_test``, and
    ``batches.meta`` with the real class names.
    """
    d = Path(root) / BATCHES_DIRNAME
    d.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        batch = make_batch(n_per_train_batch, seed + i, str_keys=str_keys, label=f"training batch {i} of 5")
        write_pickle(d / f"data_batch_{i}", batch)
    write_pickle(d / "test_batch", make_batch(n_test, seed + 100, str_keys=str_keys, label="testing batch 1 of 1"))
    meta: dict[Any, Any] = {
        b"label_names": [n.encode() for n in CLASS_NAMES],
        b"num_cases_per_batch": n_per_train_batch,
        b"num_vis": 3072,
    }
    if str_keys:
        meta = {k.decode(): v for k, v in meta.items()}
        meta["label_names"] = list(CLASS_NAMES)
    write_pickle(d / "batches.meta", meta)
    return d


def raw_cifar10(batches_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What was written, read back with plain ``pickle`` (an oracle independent of ``fcn.data``)."""
    xs, ys = [], []
    for i in range(1, 6):
        with open(batches_dir / f"data_batch_{i}", "rb") as f:
            b = pickle.load(f, encoding="bytes")
        xs.append(b[b"data"])
        ys.append(np.asarray(b[b"labels"]))
    with open(batches_dir / "test_batch", "rb") as f:
        t = pickle.load(f, encoding="bytes")
    return (
        np.concatenate(xs).reshape(-1, 3, 32, 32),
        np.concatenate(ys),
        t[b"data"].reshape(-1, 3, 32, 32),
        np.asarray(t[b"labels"]),
    )


def make_cifar10_archive(workdir: Path, **kwargs: Any) -> tuple[Path, str]:
    """A ``cifar-10-python.tar.gz`` lookalike built from synthetic batches; returns ``(path, md5)``."""
    src = write_cifar10(Path(workdir) / "archive-src", **kwargs)
    archive = Path(workdir) / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=BATCHES_DIRNAME)
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def tiny_train_args(data_dir: Path) -> list[str]:
    """``fcn train`` options for the tiny data written by ``write_cifar10(..., n_per_train_batch=60, n_test=50)``."""
    return ["train", "--data-dir", str(data_dir), "--no-download", "--num-train", "250", "--num-val", "50",
            "--num-test", "50", "--batch-size", "50"]  # fmt: skip
