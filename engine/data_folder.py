"""A folder per class of images (torchvision's ImageFolder layout) as a data set.

    root/<class name>/<any name>.png|.jpg|.jpeg

As in torchvision, the classes are the sub-folders in sorted order (label k is the k-th name) and
a class's images are taken in sorted file-name order; a pool index is a position in that order.
Every image must have the size of the first and one colour kind: grayscale (PIL modes 1, L, LA,
I, I;16) loads as one channel, anything else as RGB (alpha dropped: stimuli are opaque PNGs).
A stray file is an error, not skipped, so a mislabelled or half-copied tree is noticed; hidden
files (`.DS_Store`) are ignored.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from engine.data import DatasetError

EXTENSIONS = (".png", ".jpg", ".jpeg")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16"}


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _read(path: Path) -> np.ndarray:
    """One image as uint8 C×H×W."""
    try:
        with Image.open(path) as image:
            image.load()
            gray = image.mode in _GRAY_MODES
            if image.mode in ("I", "I;16"):  # 16-bit grayscale: keep the top 8 bits, as an 8-bit PNG would
                pixels = (np.asarray(image, dtype=np.uint32) >> 8).astype(np.uint8)
            else:
                pixels = np.asarray(image.convert("L" if gray else "RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path} is not a readable image ({exc}); replace or remove it") from None
    return pixels[None] if gray else pixels.transpose(2, 0, 1)


def read_folder(root: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The images (uint8 N×C×H×W), labels and class names of an ImageFolder tree."""
    entries = _visible(root)
    strays = [p for p in entries if not p.is_dir()]
    if strays:
        raise DatasetError(f"{strays[0]} lies in the data set's root; images go in a folder per class ({root}/<class>/*.png)")
    if not entries:
        raise DatasetError(f"image folder {root} is empty; it needs a folder per class ({root}/<class>/*.png)")
    classes = tuple(p.name for p in entries)
    images, labels, first = [], [], None
    for label, folder in enumerate(entries):
        files = _visible(folder)
        if not files:
            raise DatasetError(f"class folder {folder} holds no images")
        for path in files:
            if path.is_dir():
                raise DatasetError(f"{path} is a folder inside class folder {folder.name}; a class folder holds only images")
            if path.suffix.lower() not in EXTENSIONS:
                raise DatasetError(f"{path} is not a {'/'.join(EXTENSIONS)} image; a class folder holds only images")
            pixels = _read(path)
            if first is None:
                first = (path, pixels.shape)
            elif pixels.shape != first[1]:
                raise DatasetError(f"{path} is {_describe(pixels.shape)} but {first[0]} is {_describe(first[1])}; "
                                   "every image of a data set must have one size and colour kind")
            images.append(pixels)
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes


def _describe(shape: tuple[int, ...]) -> str:
    return f"{shape[2]}×{shape[1]} {'grayscale' if shape[0] == 1 else 'RGB'}"

