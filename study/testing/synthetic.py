"""Synthetic stimulus sets (random-pixel images) in the engine's format
(contracts/stimulus_manifest.v1.schema.json), for tests, benchmarks and pilots without the engine.

It imports nothing from the engine and needs no imaging library: the PNGs are written by hand.
"""
from __future__ import annotations

import hashlib
import json
import random
import struct
import zlib
from pathlib import Path

import contracts

SIZE = 28


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(path: Path, rng: random.Random, rgb: bool = False, size: tuple[int, int] = (SIZE, SIZE)) -> str:
    """An 8-bit PNG (grayscale, or RGB) of sparse random pixels, `size` = (height, width); returns its sha256."""
    height, width = size
    samples = width * (3 if rgb else 1)
    rows = b"".join(b"\x00" + bytes(rng.randrange(256) if rng.random() < 0.2 else 0 for _ in range(samples))
                    for _ in range(height))  # filter byte 0 (none) before each row
    header = struct.pack(">IIBBBBB", width, height, 8, 2 if rgb else 0, 0, 0, 0)  # 8-bit, colour type RGB or grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows))
                     + _chunk(b"IEND", b""))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_stimulus_set(directory: Path, sources: int = 8, conditions: tuple[str, ...] = ("normal", "gradreg", "clean"),
                       practice: int = 3, catch: int = 4, seed: int = 0, classes: tuple[str, ...] | None = None,
                       rgb: bool = False, size: tuple[int, int] = (SIZE, SIZE)) -> Path:
    """`sources` source images × `conditions`, plus practice and catch images; returns directory.
    `classes`: the set's class names by label (the manifest's dataset.classes); None: digits 0-9.
    `rgb`: 8-bit RGB images instead of grayscale. `size`: (height, width) of every image."""
    k = len(classes) if classes else 10
    rng = random.Random(seed)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    defenses = [c for c in conditions if c != "clean"]
    models = [{"id": f"{c}-s0", "condition": c, "architecture": "synthetic", "hyperparameters": {},
               "checkpoint_sha256": "a" * 64, "clean_accuracy": 0.97} for c in defenses]
    stimuli = []

    def add(role: str, source: str, condition: str, index: int, true: int, target: int | None) -> None:
        sid = f"stim-{len(stimuli):04d}"
        attacked = condition != "clean"
        stimuli.append({
            "id": sid, "file": f"images/{sid}.png", "sha256": _png(directory / "images" / f"{sid}.png", rng, rgb, size),
            "source_id": source, "condition": condition, "role": role,
            "model_id": f"{condition}-s0" if attacked else None,
            "attack": {"name": "itgsm", "params": {"step": 0.1, "iterations": 10}, "success": True} if attacked else None,
            "source_index": index, "true_label": true, "target_label": target,
            "norms": {"l0": 120.0, "l2": 4.5, "linf": 0.3} if attacked else {"l0": 0, "l2": 0.0, "linf": 0.0},
            "prediction": {"label": target, "confidence": 0.9} if attacked else None,
            "transfer": {m["id"]: true for m in models},
        })

    for i in range(sources):
        true = i % k
        for condition in conditions:
            add("experimental", f"src-{i:04d}", condition, i, true, (true + 1) % k)
    for i in range(practice):
        add("practice", f"practice-{i:04d}", "clean", 1000 + i, (i + 3) % k, None)
    for i in range(catch):
        add("catch", f"catch-{i:04d}", "clean", 2000 + i, (i + 5) % k, None)
    manifest = {
        # A set the first version can number is written as one, so the tests keep reading 1.0 manifests.
        "schema_version": "1.0" if k <= 10 else contracts.MANIFEST_VERSION, "created_at": "2026-11-25T11:30:00Z",
        "engine": {"version": "synthetic", "git_commit": None}, "config": {"preset": "synthetic"}, "seed": seed,
        "dataset": {"name": "synthetic", "source": "study/testing/synthetic.py", "split": "test", "sha256": "d" * 64,
                    **({"classes": list(classes)} if classes else {})},
        "models": models, "stimuli": stimuli,
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return directory
