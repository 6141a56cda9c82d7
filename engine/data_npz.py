"""An `.npz` file of arrays as a data set.

    x        images: uint8 in 0..255 or float in [0, 1]; N×H×W (grayscale), N×H×W×C or N×C×H×W (C = 1 or 3)
    y        integer labels 0..K-1, length N
    classes  optional: K class names as a string array (default "0".."K-1")

Float images are rounded to 8 bits on loading: stimuli are 8-bit PNGs, so the engine works on the
pixels participants will see. A channel axis is taken from the end when the last axis has 1 or 3
entries, else from the front. The file is read without pickle (np.load(allow_pickle=False)):
an .npz must not run code, so class names stored as Python objects are refused.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from engine.data import DatasetError


def _images(path: Path, x: np.ndarray) -> np.ndarray:
    """x as uint8 N×C×H×W."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] in (1, 3)):
        raise DatasetError(f"{path}: x has shape {x.shape}; expected N×H×W, N×H×W×C or N×C×H×W with C = 1 or 3")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise DatasetError(f"{path}: float x must lie in [0, 1], found values in [{np.nanmin(x):g}, {np.nanmax(x):g}]")
        return np.ascontiguousarray(np.round(x * 255).astype(np.uint8))
    raise DatasetError(f"{path}: x has dtype {x.dtype}; expected uint8 (0..255) or float (0..1)")


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The images (uint8 N×C×H×W), labels and class names of an .npz data set."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [k for k in ("x", "y") if k not in arrays.files]
            if missing:
                raise DatasetError(f"{path} lacks array {' and '.join(missing)}; it holds {', '.join(arrays.files) or 'nothing'} "
                                   "(expected x, y and optional classes)")
            x, y = arrays["x"], arrays["y"]
            names = arrays["classes"] if "classes" in arrays.files else None
    except DatasetError:
        raise
    except ValueError as exc:  # np.load's refusal of object arrays
        raise DatasetError(f"{path} holds Python objects ({exc}); store class names as a string array, "
                           "e.g. np.array(['cat', 'dog'])") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path} is not a readable .npz file ({exc})") from None
    if x.ndim == 0 or len(x) == 0:
        raise DatasetError(f"{path}: x holds no images")
    images = _images(path, x)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{path}: y must be a 1-d array of integer labels, got shape {y.shape} of dtype {y.dtype}")
    if len(y) != len(images):
        raise DatasetError(f"{path}: x has {len(images)} images but y has {len(y)} labels")
    if names is not None and (names.ndim != 1 or names.dtype.kind not in "US"):
        raise DatasetError(f"{path}: classes must be a 1-d string array, got shape {names.shape} of dtype {names.dtype}")
    classes = tuple(str(n) for n in names) if names is not None else tuple(str(k) for k in range(int(y.max(initial=-1)) + 1))
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        bad = int(y.min() if y.min() < 0 else y.max())
        raise DatasetError(f"{path}: label {bad} has no class; labels must run 0..{len(classes) - 1} ({len(classes)} class names)")
    return images, y.astype(np.int64), classes

