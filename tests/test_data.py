import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.data import DatasetError, load_dataset, load_embedded_mnist, load_idx_dataset

FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_embedded_mnist_is_balanced_disjoint_and_deterministic():
    ds = load_embedded_mnist(seed=0)
    assert [len(s.y) for s in (ds.train, ds.val, ds.test)] == [3000, 1000, 1000]
    for split in (ds.train, ds.val, ds.test):
        assert split.x.shape[1:] == (1, 28, 28) and split.x.dtype == torch.float32
        assert 0.0 <= split.x.min() and split.x.max() <= 1.0
        counts = split.y.bincount(minlength=10)
        assert (counts == counts[0]).all()
    pools = [set(s.indices.tolist()) for s in (ds.train, ds.val, ds.test)]
    assert not (pools[0] & pools[1]) and not (pools[0] & pools[2]) and not (pools[1] & pools[2])
    again = load_embedded_mnist(seed=0)
    assert torch.equal(again.test.indices, ds.test.indices) and again.sha256 == ds.sha256
    assert not torch.equal(load_embedded_mnist(seed=1).test.indices, ds.test.indices)


def test_idx_loader_reads_debian_fashion_mnist():
    ds = load_idx_dataset(FASHION)
    assert len(ds.test.y) == 10_000 and len(ds.train.y) + len(ds.val.y) == 60_000
    assert ds.train.x.shape[1:] == (1, 28, 28) and float(ds.test.x.max()) == 1.0
    assert ds.test.y.bincount().tolist() == [1000] * 10


def _copy_fashion(tmp_path: Path) -> Path:
    target = tmp_path / "fm"
    shutil.copytree(FASHION, target)
    return target


def _rewrite(path: Path, transform) -> None:
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(transform(data), compresslevel=1))


@pytest.mark.parametrize("damage, message", [
    ("missing_dir", "does not exist"),
    ("missing_file", "lacks t10k-labels-idx1-ubyte"),
    ("truncated", "truncated"),
    ("magic", "magic number"),
    ("count", "labels"),
    ("not_gzip", "corrupt"),
])
def test_bad_idx_directory_gives_one_line_error(tmp_path, damage, message):
    directory = tmp_path / "nowhere" if damage == "missing_dir" else _copy_fashion(tmp_path)
    labels = directory / "t10k-labels-idx1-ubyte.gz"
    if damage == "missing_file":
        labels.unlink()
    elif damage == "truncated":
        _rewrite(labels, lambda d: d[:-10])
    elif damage == "magic":
        _rewrite(labels, lambda d: (2051).to_bytes(4, "big") + d[4:])
    elif damage == "count":  # header and payload agree, but fewer labels than images
        _rewrite(labels, lambda d: d[:4] + (9000).to_bytes(4, "big") + d[8:9008])
    elif damage == "not_gzip":
        labels.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DatasetError, match=message):
        load_dataset(str(directory))
    result = subprocess.run([sys.executable, "-m", "engine", "data", "--dataset", str(directory)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
