"""Write small stimulus sets in the engine's format (contracts/stimulus_manifest.v1.schema.json).

Stands in for `engine generate-stimuli` in the study's tests; it imports nothing from the engine.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from PIL import Image

DEFENSES = ("normal", "adversarial", "distilled", "gradreg", "gradreg-uniform")


def _png(path: Path, rng: random.Random) -> str:
    image = Image.new("L", (28, 28))
    image.putdata([rng.randrange(256) if rng.random() < 0.2 else 0 for _ in range(28 * 28)])
    image.save(path, format="PNG")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_stimulus_set(directory: Path, sources: int = 8, conditions: tuple[str, ...] = ("normal", "gradreg", "clean"),
                       practice: int = 3, catch: int = 4, seed: int = 0) -> Path:
    """`sources` source digits × `conditions`, plus practice and catch images; returns directory."""
    rng = random.Random(seed)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    defenses = [c for c in conditions if c != "clean"]
    models = [{"id": f"{c}-s0", "condition": c, "architecture": "test", "hyperparameters": {},
               "checkpoint_sha256": "a" * 64, "clean_accuracy": 0.97} for c in defenses]
    stimuli = []

    def add(role: str, source: str, condition: str, index: int, true: int, target: int | None) -> None:
        sid = f"stim-{len(stimuli):04d}"
        attacked = condition != "clean"
        stimuli.append({
            "id": sid, "file": f"images/{sid}.png", "sha256": _png(directory / "images" / f"{sid}.png", rng),
            "source_id": source, "condition": condition, "role": role,
            "model_id": f"{condition}-s0" if attacked else None,
            "attack": {"name": "itgsm", "params": {"step": 0.1, "iterations": 10}, "success": True} if attacked else None,
            "source_index": index, "true_label": true, "target_label": target,
            "norms": {"l0": 120.0, "l2": 4.5, "linf": 0.3} if attacked else {"l0": 0, "l2": 0.0, "linf": 0.0},
            "prediction": {"label": target, "confidence": 0.9} if attacked else None,
            "transfer": {m["id"]: true for m in models},
        })

    for k in range(sources):
        true = k % 10
        for condition in conditions:
            add("experimental", f"src-{k:04d}", condition, k, true, (true + 1) % 10)
    for k in range(practice):
        add("practice", f"practice-{k:04d}", "clean", 1000 + k, (k + 3) % 10, None)
    for k in range(catch):
        add("catch", f"catch-{k:04d}", "clean", 2000 + k, (k + 5) % 10, None)
    manifest = {
        "schema_version": "1.0", "created_at": "2026-11-25T11:30:00Z",
        "engine": {"version": "test", "git_commit": None}, "config": {"preset": "test"}, "seed": seed,
        "dataset": {"name": "test", "source": "tests/study/stimset.py", "split": "test", "sha256": "d" * 64},
        "models": models, "stimuli": stimuli,
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return directory
