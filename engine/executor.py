"""Train the zoo's missing models on a SLURM cluster, through submitit, into the same checkpoint cache.

`--executor local` (the default) keeps training in this machine's processes (`--jobs`);
`--executor slurm` submits one job array per call (a grid of λ, a set of conditions), each task
training one model with the same code and seed as a local run, so the checkpoints are the same
bytes as a local run on as many torch threads as `--slurm-cpus` (the default 1 is what local
`--jobs` processes use). The cache is the record of what is done: a task counts as done when its checkpoint's
sidecar exists, a re-run submits only what is still missing, and a task that ends without its
checkpoint (failed, cancelled, pre-empted, timed out) is reported with its log and resubmitted
up to `retries` times.

Job states come from `squeue --states=all`, which every SLURM answers without an accounting
database (submitit's own state checks need `sacct`); a task squeue no longer lists is judged by
the cache alone. Options come from the `[slurm]` table of the `--config` TOML, then `--slurm-*`.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from engine.config import ConfigError, TrainConfig, build
from engine.data import Dataset, Split

QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED", "STOPPED",
          "SIGNALING", "STAGE_OUT"}
RUNNING = {"RUNNING", "COMPLETING"}


def _option(default, help: str):
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class SlurmOptions:
    partition: str = _option("", "partition (default: the cluster's default)")
    time_min: int = _option(60, "time limit of each task, minutes")
    cpus: int = _option(1, "CPUs per task (also its torch threads)")
    gpus: int = _option(0, "GPUs per task (with --device cuda)")
    mem_gb: float = _option(4.0, "memory per task, GB")
    array_parallelism: int = _option(64, "tasks of one array running at once")
    retries: int = _option(2, "resubmissions of a task that ends without its checkpoint")
    logs: str = _option("runs/slurm", "folder of submitit's job files and logs, and of the staged data set")
    poll_s: float = _option(5.0, "seconds between squeue calls")


FLAGS = {f.name: "--slurm-" + f.name.replace("_", "-") for f in dataclasses.fields(SlurmOptions)}


def add_executor_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--executor", choices=("local", "slurm"), default="local",
                        help="where missing models train: here (default) or as a SLURM job array")
    for f in dataclasses.fields(SlurmOptions):
        cast = {"str": str, "int": int, "float": float}[f.type]
        parser.add_argument(FLAGS[f.name], type=cast, metavar=f.type.upper(),
                            help=f"{f.metadata['help']} (default {f.default!r}; or `{f.name}` in the [slurm] table of --config)")


def options_from_args(args: argparse.Namespace) -> SlurmOptions:
    """The dataclass defaults, then the `[slurm]` table of `--config`, then the `--slurm-*` flags."""
    fields: dict = {}
    if getattr(args, "config", None):
        try:
            table = tomllib.loads(Path(args.config).read_text()).get("slurm", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read the [slurm] table of {args.config}: {exc}") from None
        fields.update(table)
    fields.update({name: v for name in FLAGS if (v := getattr(args, f"slurm_{name}", None)) is not None})
    return validate(fields)


def validate(fields: dict) -> SlurmOptions:
    types = {f.name: f.type for f in dataclasses.fields(SlurmOptions)}
    for key, value in fields.items():
        if key not in types:
            raise ConfigError(f"unknown SLURM option {key!r}; options are {', '.join(types)}")
        wanted = {"str": (str,), "int": (int,), "float": (int, float)}[types[key]]
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise ConfigError(f"SLURM option {key} must be {types[key]}, not {value!r}")
    opts = SlurmOptions(**{k: float(v) if types[k] == "float" else v for k, v in fields.items()})
    for key in ("time_min", "cpus", "array_parallelism", "mem_gb", "poll_s"):
        if getattr(opts, key) <= 0:
            raise ConfigError(f"SLURM option {key} must be > 0, got {getattr(opts, key)}")
    for key in ("gpus", "retries"):
        if getattr(opts, key) < 0:
            raise ConfigError(f"SLURM option {key} must be ≥ 0, got {getattr(opts, key)}")
    return opts


def from_args(args: argparse.Namespace) -> SlurmExecutor | None:
    """The executor `--executor` names; None for local (the caller's own processes)."""
    opts = options_from_args(args)
    return SlurmExecutor(opts) if args.executor == "slurm" else None


def _stage_dataset(dataset: Dataset, folder: Path) -> Path:
    """The data set as one file the tasks read from shared storage (a task pickle stays small)."""
    path = folder / "datasets" / f"{dataset.sha256}.pt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({"name": dataset.name, "source": dataset.source, "sha256": dataset.sha256, "classes": list(dataset.classes),
                    **{f"{s}.{k}": getattr(getattr(dataset, s), k) for s in ("train", "val", "test") for k in ("x", "y", "indices")}},
                   tmp)
        os.replace(tmp, path)
    return path


def _load_staged(path: Path) -> Dataset:
    d = torch.load(path, weights_only=True)
    splits = {s: Split(d[f"{s}.x"], d[f"{s}.y"], d[f"{s}.indices"]) for s in ("train", "val", "test")}
    return Dataset(d["name"], d["source"], d["sha256"], **splits, classes=tuple(d["classes"]))


def train_task(condition: str, settings: dict, preset: str, seed: int, cache_dir: str, dataset_file: str, threads: int) -> None:
    """What one array task runs: the zoo's own training of one model into the cache. The config
    travels as its plain settings (the config class is built at run time from the regime registry)."""
    from engine import zoo  # engine.zoo imports this module: a top-level import would be circular

    torch.set_num_threads(threads)
    zoo.train_or_load_config(condition, build([("config", settings)]), preset, seed, Path(cache_dir), _load_staged(Path(dataset_file)), progress=False)


@dataclass
class _Task:
    condition: str
    cfg: TrainConfig
    checkpoint: Path
    attempts: int = 0
    job: object = None  # the submitit Job of the latest attempt

    @property
    def label(self) -> str:
        return self.checkpoint.stem


class SlurmExecutor:
    def __init__(self, options: SlurmOptions) -> None:
        if shutil.which("sbatch") is None or shutil.which("squeue") is None:
            raise ConfigError("--executor slurm needs SLURM's sbatch and squeue on PATH; run on a cluster login node, "
                              "or use --executor local")
        try:
            import submitit
        except ImportError:
            raise ConfigError("--executor slurm needs submitit: pip install 'legit-adv[cluster]'") from None
        self.options = options
        self._executor = submitit.SlurmExecutor(folder=Path(options.logs).resolve() / "%j")
        params = {"time": options.time_min, "cpus_per_task": options.cpus, "mem": f"{int(options.mem_gb * 1024)}M",
                  "array_parallelism": options.array_parallelism, "job_name": "engine-train"}
        if options.partition:
            params["partition"] = options.partition
        if options.gpus:
            params["gpus_per_node"] = options.gpus
        self._executor.update_parameters(**params)

    def train(self, jobs: list[tuple[str, TrainConfig]], preset: str, seed: int, cache_dir: Path, dataset: Dataset,
              progress: bool = True) -> None:
        """Train every (condition, config) whose checkpoint is not in `cache_dir`, as one job array; returns
        when all are in the cache, or raises ConfigError naming the tasks that used up their retries."""
        from engine import zoo  # see train_task

        cache_dir = Path(cache_dir).resolve()
        tasks = {}
        for condition, cfg in jobs:
            path = zoo.checkpoint_path(condition, cfg, preset, seed, cache_dir, dataset)
            if not _done(path):
                tasks.setdefault(path, _Task(condition, cfg, path))
        if not tasks:
            return
        dataset_file = _stage_dataset(dataset, Path(self.options.logs).resolve())
        todo, active, given_up = list(tasks.values()), [], []
        with tqdm(total=len(tasks), desc=f"slurm: {len(tasks)} models", unit="model", disable=not progress) as bar:
            while todo or active:
                if todo:
                    self._submit(todo, preset, seed, cache_dir, dataset_file)
                    active, todo = active + todo, []
                time.sleep(self.options.poll_s)
                states = self._states([t.job.job_id for t in active])
                if states is None:
                    continue
                still = []
                for t in active:
                    state = states.get(t.job.job_id)  # None: squeue has forgotten it; the cache decides
                    if state in QUEUED or state in RUNNING:
                        still.append(t)
                    elif _done(t.checkpoint):
                        bar.update()
                    else:
                        retry = t.attempts <= self.options.retries
                        bar.write(file=sys.stderr, s=f"slurm: task {t.job.job_id} ({t.label}) ended {state or 'without its checkpoint'}"
                                  f"{_error_line(t.job)}; log {t.job.paths.stderr}"
                                  + (f"; retry {t.attempts}/{self.options.retries}" if retry else "; no retries left"))
                        (todo if retry else given_up).append(t)
                active = still
                queued = sum(states.get(t.job.job_id) in QUEUED for t in active)
                bar.set_postfix_str(f"{queued} queued, {len(active) - queued} running, {bar.n} done")
        if given_up:
            raise ConfigError(f"{len(given_up)} SLURM task(s) failed {self.options.retries + 1} times: "
                              + ", ".join(t.label for t in given_up) + f"; their logs are under {self.options.logs}")

    def _submit(self, tasks: list[_Task], preset: str, seed: int, cache_dir: Path, dataset_file: Path) -> None:
        from submitit.core.utils import FailedJobError

        try:
            with self._executor.batch():
                pending = [self._executor.submit(train_task, t.condition, t.cfg.model_dump(by_alias=True), preset, seed, str(cache_dir), str(dataset_file),
                                                 self.options.cpus) for t in tasks]
        except FailedJobError as exc:  # sbatch's refusal: its last line says why
            raise ConfigError(f"sbatch refused the job array: {str(exc).strip().splitlines()[-1]}") from None
        for t, job in zip(tasks, pending):
            t.job, t.attempts = job, t.attempts + 1

    @staticmethod
    def _states(job_ids: list[str]) -> dict[str, str] | None:
        """Task id -> SLURM state for the tasks squeue still knows (finished ones stay for MinJobAge);
        None when squeue could not answer (the controller busy or restarting): nothing is judged then."""
        arrays = sorted({j.split("_")[0] for j in job_ids})
        out = subprocess.run(["squeue", "--array", "--states=all", "--noheader", "--format=%i|%T", "--jobs", ",".join(arrays)],
                             capture_output=True, text=True)
        if out.returncode != 0 and "Invalid job id" not in out.stderr:  # that one only means: all forgotten
            return None
        states = {}
        for line in out.stdout.splitlines():
            task, _, state = line.strip().partition("|")
            states[task] = state
        return states


def _done(checkpoint: Path) -> bool:
    return checkpoint.with_suffix(".json").is_file()


def _result_written(job) -> bool:
    return job.paths.result_pickle.exists()


def _error_line(job) -> str:
    """The last line of a task's Python error, when it got far enough to record one."""
    if not _result_written(job):
        return ""
    try:
        job.result()
    except Exception as exc:  # submitit re-raises the task's error with its traceback as text
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        return f" ({lines[-1].strip()})" if lines else ""
    return ""
