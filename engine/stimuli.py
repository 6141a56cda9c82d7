"""Stimulus sets for the human study: attack every model on the same source digits, write PNGs and a manifest.

Layout (../shared/design.md): DIR/manifest.json, valid against contracts/stimulus_manifest.v1.schema.json,
DIR/images/*.png (lossless 8-bit grayscale, 28×28) and DIR/contact_sheet.png (rows = conditions,
columns = the same source digits) for eyeballing a set before fielding it. Norms and predictions
are computed on the saved 8-bit images: that is what participants see.

The default layout is matched: the same source digits are attacked against every model, and an
unperturbed `clean` control of each source carries the same target, so every source is its own control.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import io
import json
import shutil
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn
from tqdm.auto import tqdm

import contracts
from engine import __version__, attacks, checkpoints, executor, zoo
from engine.config import CONDITIONS, ConfigError, make_config
from engine.data import Dataset, load_dataset

DESIGN_FILE = Path(__file__).with_name("stimulus_design.toml")
TARGET_RULES = ("next", "all", "random")
ATTACKS = ("itgsm", "tgsm", "jsma")
MATCHING = ("none", "l2")
SPLITS = ("test", "val")  # never `train`: the models have seen those digits
SHEET_COLUMNS, SHEET_ZOOM = 20, 2


@dataclass(frozen=True)
class Design:
    """What `engine/stimulus_design.toml` describes (its comments explain each field; it holds the defaults)."""
    dataset: str
    split: str
    sources_per_class: int
    practice: int
    catch: int
    target_rule: str
    conditions: tuple[str, ...]
    clean_controls: bool
    attack: str
    step: float
    iterations: int
    eps: float
    stop_confidence: float
    theta: float
    gamma: float
    matching: str

    def attack_params(self) -> dict:
        """The parameters of `attack` as the manifest records them (0 for eps/stop_confidence means none)."""
        if self.attack == "jsma":
            return {"theta": self.theta, "gamma": self.gamma}
        if self.attack == "tgsm":
            return {"eps": self.step}
        return {"step": self.step, "iterations": self.iterations, "eps": self.eps or None,
                "stop_confidence": self.stop_confidence or None}


def parse_value(text: str) -> object:
    """A --set value as TOML (numbers, booleans, ["lists"]), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_design(path: str | Path | None = None, overrides: dict | None = None) -> Design:
    """The default design, updated by a TOML file holding any subset of its keys, then by overrides."""
    fields = tomllib.loads(DESIGN_FILE.read_text())
    layers = [(str(DESIGN_FILE), fields)]
    if path is not None:
        try:
            layers.append((str(path), tomllib.loads(Path(path).read_text())))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read design {path}: {exc}") from None
    layers.append(("--set", overrides or {}))
    for where, layer in layers[1:]:
        unknown = sorted(set(layer) - set(fields))
        if unknown:
            raise ConfigError(f"{where}: unknown design field(s) {', '.join(unknown)}; fields are {', '.join(fields)}")
        fields = {**fields, **layer}
    return validate(fields)


def validate(fields: dict) -> Design:
    kinds = {f.name: f.type for f in dataclasses.fields(Design)}
    for key, value in fields.items():
        kind = {"int": int, "float": (int, float), "bool": bool, "str": str, "tuple[str, ...]": list}[kinds[key]]
        if not isinstance(value, kind) or (isinstance(value, bool) and kinds[key] != "bool"):
            raise ConfigError(f"design field {key} must be {kinds[key].replace('tuple[str, ...]', 'a list of names')}, not {value!r}")
    d = Design(**{**fields, "conditions": tuple(fields["conditions"])})
    checks = [
        (d.split in SPLITS, f"split must be one of {', '.join(SPLITS)}"),
        (d.sources_per_class >= 1 and d.practice >= 0 and d.catch >= 0, "sources_per_class must be ≥ 1, practice and catch ≥ 0"),
        (d.target_rule in TARGET_RULES, f"target_rule must be one of {', '.join(TARGET_RULES)}"),
        (len(d.conditions) > 0 and len(set(d.conditions)) == len(d.conditions), "conditions must be a non-empty list without repeats"),
        (set(d.conditions) <= set(CONDITIONS), f"unknown condition in {list(d.conditions)}; choose from {', '.join(CONDITIONS)}"),
        (d.attack in ATTACKS, f"attack must be one of {', '.join(ATTACKS)}"),
        (d.step > 0 and d.iterations >= 1 and d.eps >= 0, "step must be > 0, iterations ≥ 1, eps ≥ 0"),
        (0 <= d.stop_confidence < 1, "stop_confidence must be in [0, 1)"),
        (d.theta != 0 and 0 < d.gamma <= 1, "theta must be non-zero and gamma in (0, 1]"),
        (d.matching in MATCHING, f"matching must be one of {', '.join(MATCHING)}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return d


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats to the 8-bit pixels a PNG stores (rounded, unlike torchattacks' truncating save)."""
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and their probabilities for a batch in [0, 1]."""
    with attacks.eval_mode(model):
        confidence, label = model(x).softmax(1).max(1)
    return label, confidence


def select_images(y: torch.Tensor, correct: torch.Tensor, design: Design,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Positions in the split of the sources (class by class), the practice and the catch digits.

    Sources and catch digits are drawn among the digits every model labels correctly, so that a
    changed label means the attack worked and a wrong answer on a catch trial means inattention.
    Practice and catch digits are never sources.
    """
    order = torch.randperm(len(y), generator=generator)
    sources = []
    for c in range(10):
        pool = order[(correct & (y == c))[order]]
        if len(pool) < design.sources_per_class:
            raise ConfigError(f"only {len(pool)} digits of class {c} in the {design.split} split are labelled correctly "
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


def assign_targets(labels: torch.Tensor, rule: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(which source, target) pairs: one per source for `next` and `random`, nine for `all`."""
    n = len(labels)
    if rule == "all":
        which = torch.arange(n).repeat_interleave(9)
        return which, (labels[which] + torch.arange(1, 10).repeat(n)) % 10
    shift = torch.ones(n, dtype=torch.long) if rule == "next" else torch.randint(1, 10, (n,), generator=generator)
    return torch.arange(n), (labels + shift) % 10


def run_attack(model: nn.Module, x: torch.Tensor, target: torch.Tensor, design: Design) -> torch.Tensor:
    if design.attack == "jsma":
        return attacks.jsma(model, x, target, design.theta, design.gamma)[0]
    if design.attack == "tgsm":
        return attacks.tgsm(model, x, target, design.step)
    return attacks.itgsm(model, x, target, design.step, design.iterations, design.eps or None, design.stop_confidence or None)[0]


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


def norms(image8: torch.Tensor, source8: torch.Tensor) -> dict:
    d = (image8.float() - source8.float()).flatten() / 255
    return {"l0": int((d != 0).sum()), "l2": round(float(d.norm()), 6), "linf": round(float(d.abs().max()), 6)}


def png_bytes(image8: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image8.reshape(image8.shape[-2:]).numpy(), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def contact_sheet(rows: dict[str, torch.Tensor], headers: list[str]) -> Image.Image:
    """Rows = conditions, columns = the same (source, target) items, wrapped in bands of SHEET_COLUMNS."""
    cell, margin, header = 28 * SHEET_ZOOM + 2, 90, 14
    bands = [range(s, min(s + SHEET_COLUMNS, len(headers))) for s in range(0, len(headers), SHEET_COLUMNS)]
    band_height = header + cell * len(rows) + 6
    sheet = Image.new("L", (margin + cell * min(SHEET_COLUMNS, len(headers)), band_height * len(bands)), 255)
    draw = ImageDraw.Draw(sheet)
    for b, columns in enumerate(bands):
        top = b * band_height
        for j, col in enumerate(columns):
            draw.text((margin + j * cell + 4, top + 1), headers[col], fill=0)
        for i, (name, images) in enumerate(rows.items()):
            y = top + header + i * cell
            draw.text((4, y + cell // 3), name, fill=0)
            for j, col in enumerate(columns):
                tile = Image.fromarray(images[col].reshape(28, 28).numpy(), mode="L").resize((cell - 2, cell - 2), Image.NEAREST)
                sheet.paste(tile, (margin + j * cell, y))
    return sheet


def build(models: dict[str, tuple[nn.Module, dict]], dataset: Dataset, design: Design, seed: int,
          extra_config: dict | None = None, progress: bool = True) -> tuple[dict, dict[str, bytes], Image.Image]:
    """The manifest (without image hashes' files written), the PNG bytes by file name, and the contact sheet.

    models: {condition: (model, meta)} with meta as the zoo's sidecar (id, condition, architecture,
    hyperparameters, checkpoint_sha256, clean_accuracy, ...); it must cover design.conditions.
    """
    missing = [c for c in design.conditions if c not in models]
    if missing:
        raise ConfigError(f"no model for condition(s) {', '.join(missing)}")
    used = {c: models[c] for c in design.conditions}
    split = getattr(dataset, design.split)
    generator = torch.Generator().manual_seed(seed)
    labels = {c: predict(m, split.x)[0] for c, (m, _) in used.items()}
    correct = torch.stack([lab == split.y for lab in labels.values()]).all(0)
    sources, practice, catch = select_images(split.y, correct, design, generator)
    which, targets = assign_targets(split.y[sources], design.target_rule, generator)
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
                "attack": {"name": design.attack, "params": design.attack_params(), "success": bool(label == targets[k])},
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
        "schema_version": "1.0",
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "engine": {"version": __version__, "git_commit": _git_commit()},
        "config": {**dataclasses.asdict(design), **(extra_config or {})},
        "seed": seed,
        "dataset": {"name": dataset.name, "source": dataset.source, "split": design.split, "sha256": dataset.sha256},
        "models": [{**{k: meta[k] for k in ("id", "condition", "architecture", "hyperparameters", "checkpoint_sha256", "clean_accuracy")},
                    **{k: meta[k] for k in ("seed", "dataset_sha256", "git_commit") if k in meta}} for _, meta in used.values()],
        "stimuli": stimuli,
    }
    headers = [f"{int(split.y[sources[which[k]]])}>{int(targets[k])}" for k in range(len(x8))]  # the bitmap font has no arrow
    rows = ({"clean": x8} if design.clean_controls else {}) | {c: adv8[i] for i, c in enumerate(used)}
    return manifest, files, contact_sheet(rows, headers)


def _git_commit() -> str | None:
    commit = checkpoints.git_commit()
    return None if commit == "unknown" else commit


def write(out: Path, manifest: dict, files: dict[str, bytes], sheet: Image.Image, force: bool = False) -> None:
    """Write the set atomically: into a hidden sibling folder, validated, then renamed into place.

    A crash leaves either the previous folder or the complete new set, never a half-written one.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out} is not empty; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (staging / "images").mkdir()
        for name, data in files.items():
            (staging / name).write_bytes(data)
        sheet.save(staging / "contact_sheet.png")
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        contracts.load_stimulus_set(staging)  # never publish a set the study would refuse
        old = out.with_name(f".{out.name}.old-{staging.name.rsplit('.', 1)[-1]}")
        if out.is_dir():
            out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def summary(manifest: dict) -> str:
    counts: dict[str, int] = {}
    for s in manifest["stimuli"]:
        key = s["condition"] if s["role"] == "experimental" else s["role"]
        counts[key] = counts.get(key, 0) + 1
    success = {}
    for s in manifest["stimuli"]:
        if s["attack"] is not None:
            success.setdefault(s["condition"], []).append(s["attack"]["success"])
    rates = ", ".join(f"{c} {100 * np.mean(v):.0f}%" for c, v in success.items())
    return ", ".join(f"{k} {v}" for k, v in counts.items()) + f"; target reached on the saved images: {rates}"


def cmd_generate(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    design = load_design(args.config, dict(parse_set(s) for s in args.set))
    dataset = load_dataset(design.dataset)
    models: dict[str, tuple[nn.Module, dict]] = {}
    if args.models:
        loaded, metas = checkpoints.load_many(args.models, dataset)
        models = {meta["condition"]: (loaded[meta["condition"]], meta) for meta in metas}
    wanted = [c for c in design.conditions if c not in models]
    models |= zoo.load_zoo(wanted, make_config(args.preset), args.preset, args.seed, args.cache_dir, dataset,
                           progress=not args.quiet, jobs=args.jobs, cluster=executor.from_args(args))
    for condition, (_, meta) in models.items():
        if meta.get("dataset_sha256") != dataset.sha256:
            raise ConfigError(f"the {condition} model was trained on another data set than {dataset.name}")
    manifest, files, sheet = build(models, dataset, design, args.seed, {"preset": args.preset}, progress=not args.quiet)
    write(args.out, manifest, files, sheet, args.force)
    print(f"wrote {len(manifest['stimuli'])} stimuli to {args.out}/ in {time.perf_counter() - started:.0f} s "
          f"(contact sheet: {args.out}/contact_sheet.png)\n  {summary(manifest)}")


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
        present.append((s, torch.from_numpy(np.array(Image.open(path))).view(1, 28, 28)))
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
    dataset = load_dataset(manifest["dataset"]["name"] if args.dataset is None else args.dataset)
    try:
        problems = verify(args.dir, find_models(manifest, args.models_dir), dataset)
    except contracts.ContractError as exc:
        problems = exc.problems
    for line in problems:
        print(line)
    if problems:
        raise ConfigError(f"{len(problems)} record(s) of {args.dir} no longer match (listed above)")
    print(f"{args.dir}: all {len(manifest['stimuli'])} stimuli match their hashes, norms and every model's predictions")


def parse_set(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, not {text!r}")
    return key.strip(), parse_value(value.strip())


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate-stimuli", help="attack the models and write a stimulus set for the study",
                       description="Train (or reuse) the models of the design's conditions, attack them on the same source "
                                   "digits, and write DIR/manifest.json, DIR/images/*.png and DIR/contact_sheet.png. "
                                   f"The default design is {DESIGN_FILE.name} (embedded MNIST, iterated TGSM, demo preset).")
    p.add_argument("--out", type=Path, default=Path("out/stimuli"), help="output folder (default out/stimuli); must be empty or absent")
    p.add_argument("--config", type=Path, help="design TOML holding any subset of the default design's fields")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one design field (repeatable)")
    p.add_argument("--preset", default="demo", help="training preset of the models it trains (default demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of model training, source selection and targets (default 0)")
    p.add_argument("--models", type=Path, nargs="+", metavar="CKPT", help="checkpoints (.pt with sidecar) to use instead of training")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/models"), help="where trained models are cached (default runs/models)")
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    zoo.add_jobs_arg(p)
    executor.add_executor_args(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("verify", help="re-hash a stimulus set and re-run its models on it",
                       description="Re-hash every image, recompute its norms and re-run every model of the manifest on it; "
                                   "list each record that no longer matches (exit status 2 if any).")
    p.add_argument("dir", type=Path, help="the stimulus set's folder")
    p.add_argument("--models-dir", type=Path, default=Path("runs/models"), help="where to find the checkpoints, by sha256 (default runs/models)")
    p.add_argument("--dataset", help="data set to read the sources from (default: the manifest's)")
    p.set_defaults(func=cmd_verify)
