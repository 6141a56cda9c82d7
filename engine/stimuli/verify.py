"""`engine verify`: re-hash a stimulus set and re-run its models on it.

Every record is recomputed from the saved PNGs, the checkpoints the manifest names (found by
sha256) and the data set; each one that no longer matches is listed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

import contracts
from engine import checkpoints
from engine.config import ConfigError
from engine.data import EMBEDDED, Dataset, load_dataset
from engine.models import predict
from engine.stimuli.write import norms, read_png, to_uint8
from engine.zoo import add_models_dir_arg


def pool_images(dataset: Dataset) -> torch.Tensor:
    """All of the data set's images, indexed by their position in its pool (a stimulus's source_index)."""
    splits = (dataset.train, dataset.val, dataset.test)
    return torch.cat([s.x for s in splits])[torch.cat([s.indices for s in splits]).argsort()]


def find_models(manifest: dict, models_dir: Path) -> dict[str, nn.Module]:
    """The manifest's models by id, loaded from the checkpoints in models_dir whose sha256 they record."""
    by_sha = {}
    for sidecar in Path(models_dir).glob("*.json"):
        sha = json.loads(sidecar.read_text()).get("checkpoint_sha256")
        by_sha[sha] = sidecar.with_suffix(".pt")
    found = {}
    for m in manifest["models"]:
        if m["checkpoint_sha256"] not in by_sha:
            raise ConfigError(f"no checkpoint with sha256 {m['checkpoint_sha256'][:12]}… (model {m['id']}) in {models_dir}; pass --models-dir")
        found[m["id"]] = checkpoints.load(by_sha[m["checkpoint_sha256"]])[0]
    return found


def verify(directory: Path, models: dict[str, nn.Module], dataset: Dataset) -> list[str]:
    """Every way the set's records no longer match its images, models and data (empty: all match)."""
    directory = Path(directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    contracts.validate_manifest(manifest)
    if manifest["dataset"]["sha256"] != dataset.sha256:
        return [f"data set {dataset.name} has sha256 {dataset.sha256[:12]}…, the set was made from {manifest['dataset']['sha256'][:12]}…"]
    pool = to_uint8(pool_images(dataset))
    problems, present = [], []
    for s in manifest["stimuli"]:
        path = directory / s["file"]
        if not path.is_file():
            problems.append(f"{s['id']}: {s['file']} is missing")
            continue
        if contracts.sha256_file(path) != s["sha256"]:
            problems.append(f"{s['id']}: {s['file']} does not match its sha256")
        present.append((s, read_png(path)))
    if not present:
        return problems
    images8 = torch.stack([image for _, image in present])
    seen = {mid: predict(m, images8.float() / 255) for mid, m in models.items()}
    for k, (s, image8) in enumerate(present):
        now = {"norms": norms(image8, pool[s["source_index"]]), "transfer": {mid: int(lab[k]) for mid, (lab, _) in seen.items()}}
        if s["model_id"] is not None:
            lab, conf = seen[s["model_id"]][0][k], seen[s["model_id"]][1][k]
            # Confidences may differ in the last digits across thread counts.
            same_conf = abs(float(conf) - s["prediction"]["confidence"]) <= 1e-4
            now["prediction"] = {"label": int(lab), "confidence": s["prediction"]["confidence"] if same_conf else round(float(conf), 6)}
        problems += [f"{s['id']}: {key} recorded {s[key]}, now {value}" for key, value in now.items() if value != s[key]]
    return problems


def cmd_verify(args: argparse.Namespace) -> None:
    manifest = json.loads((args.dir / "manifest.json").read_text()) if (args.dir / "manifest.json").is_file() else None
    if manifest is None:
        raise ConfigError(f"no manifest.json in {args.dir}")
    recorded = manifest["dataset"]  # a user's data set is found by its path (source), the embedded one by its name
    dataset = load_dataset(args.dataset or (recorded["name"] if recorded["name"] == EMBEDDED else recorded["source"]))
    try:
        problems = verify(args.dir, find_models(manifest, args.models_dir), dataset)
    except contracts.ContractError as exc:
        problems = exc.problems
    for line in problems:
        print(line)
    if problems:
        raise ConfigError(f"{len(problems)} record(s) of {args.dir} no longer match (listed above)")
    print(f"{args.dir}: all {len(manifest['stimuli'])} stimuli match their hashes, norms and every model's predictions")




def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="re-hash a stimulus set and re-run its models on it",
                       description="Re-hash every image, recompute its norms and re-run every model of the manifest on it; "
                                   "list each record that no longer matches (exit status 2 if any).")
    p.add_argument("dir", type=Path, help="the stimulus set's folder")
    add_models_dir_arg(p)
    p.add_argument("--dataset", help="data set to read the sources from (default: the manifest's)")
    p.set_defaults(func=cmd_verify)
