"""`engine verify`: re-hash a stimulus set and re-run its models on it.

Every record is recomputed from the saved PNGs, the checkpoints the manifest names (found by
sha256, or a retrain with the recorded settings: see find_models) and the data set; each one that
no longer matches is listed, and so is each setting a mismatched checkpoint was trained with otherwise.
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


# What decides a model's weights besides its code: compared between the manifest and a sidecar.
PROVENANCE = ("condition", "architecture", "hyperparameters", "seed", "dataset_sha256")


def _flat(value: object, prefix: str) -> dict[str, object]:
    if isinstance(value, dict):
        return {k: v for key, sub in sorted(value.items()) for k, v in _flat(sub, f"{prefix}.{key}").items()}
    return {prefix: value}


def provenance_differences(recorded: dict, sidecar: dict) -> list[str]:
    """`key recorded → now` for each setting (dotted into hyperparameters) a checkpoint's sidecar has otherwise."""
    ours = {k: v for key in PROVENANCE if key in recorded for k, v in _flat(recorded[key], key).items()}
    theirs = {k: v for key in PROVENANCE if key in recorded for k, v in _flat(sidecar.get(key), key).items()}
    return [f"{k} {ours.get(k, '(none)')} → {theirs.get(k, '(none)')}" for k in sorted(set(ours) | set(theirs))
            if ours.get(k) != theirs.get(k)]


def find_models(manifest: dict, models_dir: Path) -> tuple[dict[str, nn.Module], list[str], list[str]]:
    """The manifest's models by id from the checkpoints in models_dir, with notes and problems.

    A checkpoint whose sha256 the manifest records is the model. Failing that, a checkpoint with the
    same settings, seed and data (a retrain whose bytes differ: another torch, thread count or
    device) stands in, said so in a note, and the records decide whether it is faithful. Otherwise
    the problem names the closest checkpoint and every setting it has otherwise.
    """
    sidecars = {}
    for path in sorted(Path(models_dir).glob("*.json")):
        try:
            sidecars[path.with_suffix(".pt")] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # not a sidecar; a broken one is reported where it is loaded
    by_sha = {side.get("checkpoint_sha256"): path for path, side in sidecars.items()}
    found, notes, problems = {}, [], []
    for m in manifest["models"]:
        sha = m["checkpoint_sha256"]
        if sha in by_sha:
            found[m["id"]] = checkpoints.load(by_sha[sha])[0]
            continue
        candidates = sorted((len(provenance_differences(m, side)), str(path), path) for path, side in sidecars.items()
                            if side.get("condition") == m["condition"])
        if not candidates:
            problems.append(f"model {m['id']}: no checkpoint with sha256 {sha[:12]}… and none of condition {m['condition']} "
                            f"in {models_dir}; pass --models-dir, or retrain it with the manifest's settings")
            continue
        _, _, path = candidates[0]
        differences = provenance_differences(m, sidecars[path])
        if differences:
            problems.append(f"model {m['id']}: no checkpoint with sha256 {sha[:12]}… in {models_dir}; the closest, {path.name}, "
                            f"was trained otherwise: {'; '.join(differences)}")
            continue
        found[m["id"]] = checkpoints.load(path)[0]
        notes.append(f"model {m['id']}: {path.name} has the recorded settings, seed and data but other bytes "
                     f"(sha256 {sidecars[path].get('checkpoint_sha256', '')[:12]}…, recorded {sha[:12]}…; made with git commit "
                     f"{sidecars[path].get('git_commit', 'unknown')[:12]}, recorded {str(m.get('git_commit', 'unknown'))[:12]}): "
                     "its records below decide")
    return found, notes, problems


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
    models, notes, problems = find_models(manifest, args.models_dir)
    if not problems:
        try:
            problems = verify(args.dir, models, dataset)
        except contracts.ContractError as exc:
            problems = exc.problems
    for line in [*notes, *problems]:
        print(line)
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) with {args.dir} (listed above)")
    retrained = f" ({len(notes)} model(s) retrained faithfully: other bytes, the same records)" if notes else ""
    print(f"{args.dir}: all {len(manifest['stimuli'])} stimuli match their hashes, norms and every model's predictions{retrained}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="re-hash a stimulus set and re-run its models on it",
                       description="Re-hash every image, recompute its norms and re-run every model of the manifest on it; "
                                   "list each record that no longer matches (exit status 2 if any).")
    p.add_argument("dir", type=Path, help="the stimulus set's folder")
    add_models_dir_arg(p)
    p.add_argument("--dataset", help="data set to read the sources from (default: the manifest's)")
    p.set_defaults(func=cmd_verify)
