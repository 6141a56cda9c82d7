"""Generate a stimulus set: attack every model on the same source digits, and describe each image.

The default layout is matched: the same source digits are attacked against every model, and an
unperturbed `clean` control of each source carries the same target, so every source is its own
control. Norms and predictions are computed on the 8-bit images that will be saved: that is what
participants see.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import time
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

import contracts
from contracts.settings import parse_sets, read_toml
from engine import __version__, checkpoints, config, executor, stimulus_attacks, zoo
from engine.config import ConfigError
from engine.data import Dataset, load_dataset
from engine.models import predict
from engine.stimuli.design import DEFAULT_DESIGN, DESIGN_FILE, NAMED_DESIGNS, SECTION, Design, build_design, named_layer
from engine.stimuli.write import contact_sheet, norms, png_bytes, summary, to_uint8, write


def select_images(y: torch.Tensor, correct: torch.Tensor, design: Design,
                  generator: torch.Generator, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Positions in the split of the sources (class by class), the practice and the catch digits.

    Sources and catch digits are drawn among the digits every model labels correctly, so that a
    changed label means the attack worked and a wrong answer on a catch trial means inattention.
    Practice and catch digits are never sources.
    """
    order = torch.randperm(len(y), generator=generator)
    sources = []
    for c in range(classes):
        pool = order[(correct & (y == c))[order]]
        if len(pool) < design.sources_per_class:
            raise ConfigError(f"only {len(pool)} images of class {c} in the {design.split} split are labelled correctly "
                              f"by every model; lower sources_per_class (now {design.sources_per_class})")
        sources.append(pool[:design.sources_per_class])
    sources = torch.cat(sources)
    rest = order[~torch.isin(order, sources)]
    practice = rest[:design.practice]
    rest = rest[design.practice:]
    catch = rest[correct[rest]][:design.catch]
    if len(practice) < design.practice or len(catch) < design.catch:
        raise ConfigError(f"the {design.split} split has too few digits left for {design.practice} practice and {design.catch} catch images")
    return sources, practice, catch


def assign_targets(labels: torch.Tensor, rule: str, generator: torch.Generator, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """(which source, target) pairs: one per source for `next` and `random`, one per other class for `all`."""
    n = len(labels)
    if rule == "all":
        which = torch.arange(n).repeat_interleave(classes - 1)
        return which, (labels[which] + torch.arange(1, classes).repeat(n)) % classes
    shift = torch.ones(n, dtype=torch.long) if rule == "next" else torch.randint(1, classes, (n,), generator=generator)
    return torch.arange(n), (labels + shift) % classes


def run_attack(model: nn.Module, x: torch.Tensor, target: torch.Tensor, design: Design) -> torch.Tensor:
    """The design's attack (engine/stimulus_attacks/) on each image on its own (a batch of one), so
    that an image's bytes do not depend on which other images are attacked with it: the attacks
    follow the gradient of the batch's *mean* loss (as torchattacks does), and on a saturated model
    (distillation) that mean underflows to exactly zero for some images in one batch and not in
    another. Regenerating any subset of the sources therefore gives the same bytes; the cost is
    Python overhead per image."""
    attack, params = stimulus_attacks.get(design.attack), design.attack_params()
    return torch.cat([attack.run(model, x[k:k + 1], target[k:k + 1], params) for k in range(len(x))])


def match_l2(x8: torch.Tensor, adv8: torch.Tensor, steps: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Shrink the perturbations of each item to the smallest L2 norm among its conditions, on 8-bit images.

    x8: N×… clean pixels, adv8: C×N×… attacked pixels (uint8). Each condition's perturbation δ is
    scaled by s ∈ [0, 1] (x + s·δ stays in the pixel range: it lies between x and x + δ), with s
    found by bisection so that the *rounded* image's L2 distance to x matches the smallest one (that
    distance never falls as s grows). Returns the matched uint8 images (C×N×…) and the scales (C×N).
    """
    x = x8.float()
    delta = adv8.float() - x
    view = (*delta.shape[:2], *[1] * (delta.dim() - 2))

    def distance(scale: torch.Tensor) -> torch.Tensor:
        return ((x + scale.view(view) * delta).round() - x).flatten(2).norm(dim=2)

    goal = distance(torch.ones(delta.shape[:2])).amin(0)
    low, high = torch.zeros(delta.shape[:2]), torch.ones(delta.shape[:2])
    for _ in range(steps):
        mid = (low + high) / 2
        over = distance(mid) > goal
        high, low = torch.where(over, mid, high), torch.where(over, low, mid)
    scale = torch.where((distance(high) - goal).abs() <= (distance(low) - goal).abs(), high, low)
    return (x + scale.view(view) * delta).round().clamp(0, 255).to(torch.uint8), scale


def build(models: dict[str, tuple[nn.Module, dict]], dataset: Dataset, design: Design, seed: int,
          extra_config: dict | None = None, progress: bool = True, created_at: str | None = None
          ) -> tuple[dict, dict[str, bytes], Image.Image]:
    """The manifest (without image hashes' files written), the PNG bytes by file name, and the contact sheet.
    `created_at` defaults to `creation_time()` now.

    models: {condition: (model, meta)} with meta as the zoo's sidecar (id, condition, architecture,
    hyperparameters, checkpoint_sha256, clean_accuracy, ...); it must cover design.conditions.
    """
    if len(dataset.classes) > contracts.MAX_CLASSES:  # refused before any attack runs, not by the contract check at the end
        raise ConfigError(f"data set {dataset.name} has {len(dataset.classes)} classes; a stimulus set holds at most "
                          f"{contracts.MAX_CLASSES} (manifest schema {contracts.MANIFEST_VERSION} labels are 0-{contracts.MAX_CLASSES - 1})")
    missing = [c for c in design.conditions if c not in models]
    if missing:
        raise ConfigError(f"no model for condition(s) {', '.join(missing)}")
    used = {c: models[c] for c in design.conditions}
    split = getattr(dataset, design.split)
    generator = torch.Generator().manual_seed(seed)
    labels = {c: predict(m, split.x)[0] for c, (m, _) in used.items()}
    correct = torch.stack([lab == split.y for lab in labels.values()]).all(0)
    sources, practice, catch = select_images(split.y, correct, design, generator, len(dataset.classes))
    which, targets = assign_targets(split.y[sources], design.target_rule, generator, len(dataset.classes))
    x = split.x[sources][which]
    x8 = to_uint8(x)

    adv8 = []
    for condition, (model, meta) in tqdm(used.items(), desc=f"attack ({design.attack})", unit="model", disable=not progress):
        adv8.append(to_uint8(run_attack(model, x, targets, design)))
    adv8 = torch.stack(adv8)
    unmatched = adv8
    scales = torch.ones(adv8.shape[:2])
    if design.matching == "l2":
        adv8, scales = match_l2(x8, adv8)

    def on_image(images8: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        images = images8.float() / 255
        return {meta["id"]: predict(model, images) for model, meta in used.values()}

    stimuli, files = [], {}

    def add(image8: torch.Tensor, record: dict, seen: dict[str, tuple[torch.Tensor, torch.Tensor]], k: int) -> None:
        record["file"] = f"images/{record['id']}.png"
        files[record["file"]] = png_bytes(image8)
        record["sha256"] = hashlib.sha256(files[record["file"]]).hexdigest()
        record["transfer"] = {model_id: int(lab[k]) for model_id, (lab, _) in seen.items()}
        stimuli.append(record)

    index = split.indices
    clean_seen = on_image(x8)
    for c, (condition, (model, meta)) in enumerate(used.items()):
        seen = on_image(adv8[c])
        unmatched_seen = on_image(unmatched[c]) if design.matching != "none" else seen
        for k in range(len(x8)):
            src = int(sources[which[k]])
            label, confidence = seen[meta["id"]][0][k], seen[meta["id"]][1][k]
            record = {
                "id": f"src-{int(index[src]):05d}-t{int(targets[k])}-{condition}", "source_id": f"src-{int(index[src]):05d}",
                "condition": condition, "role": "experimental", "model_id": meta["id"],
                "attack": {"name": stimulus_attacks.get(design.attack).name, "params": design.attack_params(), "success": bool(label == targets[k])},
                "source_index": int(index[src]), "true_label": int(split.y[src]), "target_label": int(targets[k]),
                "norms": norms(adv8[c, k], x8[k]),
                "prediction": {"label": int(label), "confidence": round(float(confidence), 6)},
            }
            if design.matching != "none":
                record["matching"] = {"rule": design.matching, "scale": round(float(scales[c, k]), 6),
                                      "norms_before": norms(unmatched[c, k], x8[k]),
                                      "success_before": bool(unmatched_seen[meta["id"]][0][k] == targets[k])}
            add(adv8[c, k], record, seen, k)
    if design.clean_controls:
        for k in range(len(x8)):
            src = int(sources[which[k]])
            add(x8[k], {"id": f"src-{int(index[src]):05d}-t{int(targets[k])}-clean", "source_id": f"src-{int(index[src]):05d}",
                        "condition": "clean", "role": "experimental", "model_id": None, "attack": None,
                        "source_index": int(index[src]), "true_label": int(split.y[src]), "target_label": int(targets[k]),
                        "norms": norms(x8[k], x8[k]), "prediction": None}, clean_seen, k)
    for role, positions in (("practice", practice), ("catch", catch)):
        images8 = to_uint8(split.x[positions])
        seen = on_image(images8)
        for k, pos in enumerate(positions.tolist()):
            add(images8[k], {"id": f"{role}-{int(index[pos]):05d}", "source_id": f"{role}-{int(index[pos]):05d}",
                             "condition": "clean", "role": role, "model_id": None, "attack": None,
                             "source_index": int(index[pos]), "true_label": int(split.y[pos]), "target_label": None,
                             "norms": norms(images8[k], images8[k]), "prediction": None}, seen, k)

    manifest = {
        "schema_version": contracts.MANIFEST_VERSION,
        "created_at": created_at or creation_time(),
        "engine": {"version": __version__, "git_commit": _git_commit()},
        "config": {**design.model_dump(), **(extra_config or {})},
        "seed": seed,
        "dataset": {"name": dataset.name, "source": dataset.source, "split": design.split, "sha256": dataset.sha256,
                    "classes": list(dataset.classes)},
        "models": [{**{k: meta[k] for k in ("id", "condition", "architecture", "hyperparameters", "checkpoint_sha256", "clean_accuracy")},
                    **{k: meta[k] for k in ("seed", "dataset_sha256", "git_commit", "config") if k in meta}} for _, meta in used.values()],
        "stimuli": stimuli,
    }
    headers = [f"{int(split.y[sources[which[k]]])}>{int(targets[k])}" for k in range(len(x8))]  # the bitmap font has no arrow
    rows = ({"clean": x8} if design.clean_controls else {}) | {c: adv8[i] for i, c in enumerate(used)}
    return manifest, files, contact_sheet(rows, headers)


def creation_time() -> str:
    """Now, or the moment SOURCE_DATE_EPOCH names (the reproducible-builds convention): with it, two runs
    of the same design on the same models (here, on a cluster) write the same manifest bytes."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None:
        at = dt.datetime.now(dt.timezone.utc)
    elif epoch.isdigit():
        at = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc)
    else:
        raise ConfigError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, not {epoch!r}")
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _git_commit() -> str | None:
    commit = checkpoints.git_commit()
    return None if commit == "unknown" else commit


def settings_from_args(args: argparse.Namespace) -> tuple[Design, config.TrainConfig]:
    """The design and the training config of a `generate-stimuli` command line.

    Keys go to the design unless they start with `train.` (in the --config file: a [train] table),
    so one command can both change the design and train its models with, say, another λ.
    """
    sections = (SECTION, config.SECTION)
    layers = [read_toml(args.config, SECTION, sections)] if args.config is not None else []
    layers.append(parse_sets(args.set, SECTION, sections))
    design = build_design([named_layer(args.design), *[(origin, tree.get(SECTION, {})) for origin, tree in layers]])
    train_layers = [config.preset_layer(args.preset), *[(origin, tree.get(config.SECTION, {})) for origin, tree in layers],
                    ("design.dataset", {"dataset": design.dataset})]  # the models train on the design's data set
    return design, config.build(train_layers)


def cmd_generate(args: argparse.Namespace) -> None:
    started, created_at = time.perf_counter(), creation_time()  # a bad SOURCE_DATE_EPOCH is told before any training
    design, cfg = settings_from_args(args)
    dataset = load_dataset(design.dataset)
    models: dict[str, tuple[nn.Module, dict]] = {}
    if args.models:
        loaded, metas = checkpoints.load_many(args.models, dataset)
        models = {meta["condition"]: (loaded[meta["condition"]], meta) for meta in metas}
    wanted = [c for c in design.conditions if c not in models]
    models |= zoo.load_zoo(wanted, cfg, args.preset, args.seed, args.models_dir, dataset, progress=not args.quiet, jobs=args.jobs,
                           cluster=executor.from_args(args))
    for condition, (_, meta) in models.items():
        if meta.get("dataset_sha256") != dataset.sha256:
            raise ConfigError(f"the {condition} model was trained on another data set than {dataset.name}")
    extra = {"preset": args.preset, "train": config.resolved(cfg)}
    manifest, files, sheet = build(models, dataset, design, args.seed, extra, progress=not args.quiet, created_at=created_at)
    write(args.out, manifest, files, sheet, args.force)
    print(f"wrote {len(manifest['stimuli'])} stimuli to {args.out}/ in {time.perf_counter() - started:.0f} s "
          f"(contact sheet: {args.out}/contact_sheet.png)\n  {summary(manifest)}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate-stimuli", help="attack the models and write a stimulus set for the study",
                       description="Train (or reuse) the models of the design's conditions, attack them on the same source "
                                   "digits, and write DIR/manifest.json, DIR/images/*.png and DIR/contact_sheet.png. "
                                   f"The default design is {DESIGN_FILE.name} (embedded MNIST, iterated TGSM, demo preset).")
    p.add_argument("--out", type=Path, default=Path("out/stimuli"), help="output folder (default out/stimuli); must be empty or absent")
    p.add_argument("--design", default=DEFAULT_DESIGN, metavar="NAME",
                   help=f"named design the --config file and --set start from: {', '.join(NAMED_DESIGNS)} (default "
                        f"{DEFAULT_DESIGN}: normal, FGSM adversarial, distilled, gradreg, PGD adversarial and TRADES; "
                        "paper: the paper's first four)")
    p.add_argument("--config", type=Path, help="design TOML holding any subset of the default design's fields "
                                               "(and, in a [train] table, training keys)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one design field (e.g. matching=l2) or, with the train. prefix, one training key "
                        "(e.g. train.gradreg.lambda=300); repeatable")
    p.add_argument("--preset", default="demo", help=f"training preset of the models it trains: {', '.join(config.PRESETS)} (default demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of model training, source selection and targets (default 0)")
    p.add_argument("--models", type=Path, nargs="+", metavar="CKPT", help="checkpoints (.pt with sidecar) to use instead of training")
    zoo.add_models_dir_arg(p, "--cache-dir")
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    zoo.add_jobs_arg(p)
    executor.add_executor_args(p)
    p.set_defaults(func=cmd_generate)
