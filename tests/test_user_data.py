"""A user's own data: a folder per class of images and .npz arrays, grayscale or RGB at any size."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine import cli
from engine.data import DatasetError, load_dataset

CLASSES = ("circle", "square", "triangle")


def pixels(n: int = 15, shape: tuple[int, ...] = (6, 8, 3), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n random uint8 images (H×W×C or H×W) and their labels, n/3 per class of CLASSES, in class order
    (the order of a folder tree: class by class, then by file name)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), np.arange(n) * len(CLASSES) // n


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray, ext: str = "png") -> Path:
    for k, (image, label) in enumerate(zip(images, labels)):
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"img{k:03d}.{ext}")
    return root


def test_rgb_folder_and_npz_of_the_same_images_are_the_same_data_set(tmp_path):
    images, labels = pixels()
    folder = load_dataset(str(write_folder(tmp_path / "shapes", images, labels)), seed=4)
    npz_path = tmp_path / "shapes.npz"
    np.savez(npz_path, x=images, y=labels, classes=np.array(CLASSES))
    arrays = load_dataset(str(npz_path), seed=4)
    assert folder.classes == arrays.classes == CLASSES and folder.sha256 == arrays.sha256
    for a, b in ((folder.train, arrays.train), (folder.val, arrays.val), (folder.test, arrays.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.indices, b.indices)
    # 5 images per class split 3 / 1 / 1, each class in every split, the splits disjoint
    assert [len(s.y) for s in (folder.train, folder.val, folder.test)] == [9, 3, 3]
    assert all(s.y.bincount(minlength=3).min() >= 1 for s in (folder.train, folder.val, folder.test))
    pools = [set(s.indices.tolist()) for s in (folder.train, folder.val, folder.test)]
    assert set.union(*pools) == set(range(15)) and sum(map(len, pools)) == 15
    # pixels exact, channels first; a pool index names the image (files in sorted order per sorted class)
    split = folder.test
    assert split.x.shape[1:] == (3, 6, 8)
    for x, index in zip(split.x, split.indices):
        assert torch.equal((x * 255).round().to(torch.uint8), torch.from_numpy(images[index].transpose(2, 0, 1)))
    assert not torch.equal(load_dataset(str(npz_path), seed=5).test.indices, split.indices)


def test_grayscale_folder_and_float_channels_first_npz(tmp_path):
    images, labels = pixels(shape=(5, 7))
    ds = load_dataset(str(write_folder(tmp_path / "gray", images, labels)))
    assert ds.train.x.shape[1:] == (1, 5, 7) and ds.classes == CLASSES
    np.savez(tmp_path / "f.npz", x=images[:, None].astype(np.float32) / 255, y=labels)
    floats = load_dataset(str(tmp_path / "f.npz"))
    assert floats.classes == ("0", "1", "2") and torch.equal(floats.test.x, ds.test.x)
    assert floats.sha256 != ds.sha256  # the class names are part of the data set


def _folder_damage(root: Path, damage: str) -> None:
    images, labels = pixels()
    write_folder(root, images, labels)
    if damage == "stray":
        (root / "notes.txt").write_text("x")
    elif damage == "empty_class":
        (root / "hexagon").mkdir()
    elif damage == "corrupt":
        (root / "circle" / "img000.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    elif damage == "size":
        Image.fromarray(images[0][:5]).save(root / "square" / "odd.png")
    elif damage == "gray":
        Image.fromarray(images[0][..., 0]).save(root / "square" / "gray.png")
    elif damage == "not_image":
        (root / "square" / "labels.csv").write_text("a,b")
    elif damage == "few":
        for p in sorted((root / "triangle").iterdir())[2:]:
            p.unlink()


def _npz_damage(path: Path, damage: str) -> None:
    images, labels = pixels()
    arrays = {"x": images, "y": labels, "classes": np.array(CLASSES)}
    if damage == "no_y":
        del arrays["y"]
    elif damage == "count":
        arrays["y"] = labels[:-1]
    elif damage == "label":
        arrays["y"] = np.where(labels == 2, 3, labels)
    elif damage == "range":
        arrays["x"] = images.astype(np.float32)
    elif damage == "objects":
        arrays["classes"] = np.array(["a", 1, None], dtype=object)
    elif damage == "repeat":
        arrays["classes"] = np.array(["a", "b", "a"])
    elif damage == "shape":
        arrays["x"] = images[..., :2]
    if damage == "zip":
        path.write_bytes(b"PK\x03\x04 broken")
    else:
        np.savez(path, **arrays)


@pytest.mark.parametrize("kind, damage, message", [
    ("folder", "stray", "lies in the data set's root"),
    ("folder", "empty_class", "holds no images"),
    ("folder", "corrupt", "not a readable image"),
    ("folder", "size", "must have one size"),
    ("folder", "gray", "8×6 grayscale but"),
    ("folder", "not_image", "not a .png/.jpg/.jpeg image"),
    ("folder", "few", "'triangle' has 2 image(s)"),
    ("npz", "no_y", "lacks array y"),
    ("npz", "count", "15 images but y has 14 labels"),
    ("npz", "label", "label 3 has no class"),
    ("npz", "range", "must lie in [0, 1]"),
    ("npz", "objects", "holds Python objects"),
    ("npz", "repeat", "class names repeat"),
    ("npz", "shape", "expected N×H×W"),
    ("npz", "zip", "not a readable .npz"),
    ("spec", "missing", "does not exist"),
    ("spec", "file", "not an .npz file"),
])
def test_bad_user_data_gives_one_line_error(tmp_path, capsys, kind, damage, message):
    if kind == "folder":
        spec = tmp_path / "data"
        _folder_damage(spec, damage)
    elif kind == "npz":
        spec = tmp_path / "data.npz"
        _npz_damage(spec, damage)
    else:
        spec = tmp_path / ("nowhere" if damage == "missing" else "data.csv")
        if damage == "file":
            spec.write_text("1,2")
    with pytest.raises(DatasetError, match=None) as raised:
        load_dataset(str(spec))
    assert message in str(raised.value)
    assert cli.main(["data", "--dataset", str(spec)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


def test_data_command_names_the_classes(tmp_path, capsys):
    images, labels = pixels()
    assert cli.main(["data", "--dataset", str(write_folder(tmp_path / "shapes", images, labels, ext="jpg"))]) == 0
    out = capsys.readouterr().out
    assert "images 3×6×8, classes circle, square, triangle" in out and "per class [1, 1, 1]" in out
