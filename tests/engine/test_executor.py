"""`engine sweep` and `engine generate-stimuli` with `--executor slurm` on a real single-node SLURM: the
local run's bytes, a cancelled task retried, and a second run that submits nothing."""
from __future__ import annotations

import contextlib
import csv
import difflib
import io
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
import torch

from engine import cli
from contracts import sha256_file
from engine.config import ConfigError
from engine.executor import options_from_args
from slurmhelp import slurm_cluster  # noqa: F401  (fixture)

TINY = ["--set", "epochs=1", "--set", "train_size=128"]
GRID = ["--condition", "gradreg", "--grid", "1:1:1"]  # λ = 10 beside the normal model: two tasks


def slurm_sweep(root: Path) -> tuple[int, str]:
    """`engine sweep --executor slurm` in this process (a subprocess spends seconds importing torch); (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["sweep", *GRID, *TINY, "--executor", "slurm", "--slurm-poll-s", "0.5", "--slurm-retries", "1",
                         "--slurm-array-parallelism", "2", "--slurm-mem-gb", "0.5", "--slurm-logs", str(root / "logs"),
                         "--models-dir", str(root / "cache"), "--out", str(root / "out")])
    return code, err.getvalue().replace("\r", "\n")


def table(out: Path) -> list[dict]:
    """The sweep's rows without train_seconds (wall-clock time, not a result)."""
    with open(out / "sweep-gradreg.csv") as fh:
        return [{k: v for k, v in row.items() if k != "train_seconds"} for row in csv.DictReader(fh)]


def hashes(cache: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(cache.glob("*.pt"))}


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread here, like each SLURM task (--slurm-cpus 1): the same bytes need the same arithmetic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Path:
    """The same sweep trained here."""
    root = tmp_path_factory.mktemp("local")
    with one_thread():
        assert cli.main(["sweep", *GRID, *TINY, "--models-dir", str(root / "cache"), "--out", str(root / "out")]) == 0
    return root


@pytest.fixture(scope="module")
def on_slurm(slurm_cluster, tmp_path_factory) -> tuple[Path, tuple[int, str], str]:  # noqa: F811
    """The sweep submitted to SLURM, one of its tasks cancelled as soon as it runs."""
    root = tmp_path_factory.mktemp("slurm")
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(slurm_sweep, root)
        cancelled, deadline = "", time.monotonic() + 60
        while not cancelled and time.monotonic() < deadline and not run.done():
            running = subprocess.run(["squeue", "--noheader", "--states=RUNNING", "--format=%i"], capture_output=True, text=True)
            if running.stdout.split():
                cancelled = running.stdout.split()[0]
                subprocess.run(["scancel", cancelled], check=True)
            time.sleep(0.2)
        return root, run.result(timeout=300), cancelled


@pytest.mark.slurm
def test_a_cancelled_task_is_reported_with_its_log_and_retried(on_slurm):
    root, (code, err), cancelled = on_slurm
    assert cancelled, "no task was seen running within 60 s"
    assert code == 0, err[-2000:]
    (report,) = [line for line in err.splitlines() if f"task {cancelled} " in line]
    assert "ended CANCELLED" in report and "retry 1/1" in report
    log = Path(report.split("; log ")[1].split(";")[0])
    assert log.is_file() and log.is_relative_to(root / "logs")
    # The progress bar counts the array's tasks as squeue sees them, to the end.
    shown = re.findall(r"(\d+) queued, (\d+) running, (\d+) done", err)
    assert any(running != "0" for _, running, _ in shown) and shown[-1] == ("0", "0", "2"), shown


@pytest.mark.slurm
def test_the_slurm_sweep_equals_the_local_sweep_byte_for_byte(on_slurm, local):
    root, (code, err), _ = on_slurm
    assert code == 0, err[-2000:]
    assert len(hashes(local / "cache")) == 2
    assert hashes(root / "cache") == hashes(local / "cache")
    assert table(root / "out") == table(local / "out")


@pytest.mark.slurm
def test_a_second_run_submits_nothing(on_slurm):
    root, (code, err), _ = on_slurm
    assert code == 0, err[-2000:]
    jobs_before, rows = sorted(p.name for p in (root / "logs").iterdir()), table(root / "out")
    code, err = slurm_sweep(root)
    assert code == 0, err[-2000:]
    assert "slurm:" not in err
    # `engine train` goes through the same cache: its normal model is there already.
    with contextlib.redirect_stderr(io.StringIO()) as train_err:
        assert cli.main(["train", "--condition", "normal", *TINY, "--executor", "slurm", "--slurm-logs", str(root / "logs"),
                         "--models-dir", str(root / "cache")]) == 0
    assert "slurm:" not in train_err.getvalue()
    assert sorted(p.name for p in (root / "logs").iterdir()) == jobs_before
    assert table(root / "out") == rows


# One model good enough that every class has a digit it labels correctly (lr 0.01: the default's few
# steps leave it at chance), one source per class: 22 stimuli.
STIMULI = ["--quiet", "--jobs", "1", "--set", 'conditions=["normal"]', "--set", "sources_per_class=1",
           "--set", "practice=1", "--set", "catch=1", "--set", "train.epochs=1", "--set", "train.train_size=256", "--set", "train.lr=0.01"]


def slurm_tasks(logs: Path) -> set[str]:
    """submitit's folders of the tasks submitted so far (JOBID_TASK in an array, JOBID for a job alone)."""
    return {p.name for p in logs.iterdir() if re.fullmatch(r"\d+(_\d+)?", p.name)}


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slurm
def test_a_stimulus_set_generated_through_slurm_equals_the_local_one_byte_for_byte(on_slurm, local, monkeypatch):
    root = on_slurm[0]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # the manifest's created_at, as reproducible builds pin it
    with one_thread():
        assert cli.main(["generate-stimuli", *STIMULI, "--models-dir", str(local / "cache"), "--out", str(local / "stimuli")]) == 0
        tasks_before, err = slurm_tasks(root / "logs"), io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main(["generate-stimuli", *STIMULI, "--executor", "slurm", "--slurm-poll-s", "0.5", "--slurm-mem-gb", "0.5",
                             "--slurm-logs", str(root / "logs"), "--models-dir", str(root / "cache"), "--out", str(root / "stimuli")])
    assert code == 0, err.getvalue()[-2000:]
    assert len(slurm_tasks(root / "logs") - tasks_before) == 1  # the model trained on the cluster, not here
    ours, theirs = files(root / "stimuli"), files(local / "stimuli")
    assert len([name for name in ours if name.startswith("images/")]) == 22
    assert ours.keys() == theirs.keys() and "manifest.json" in ours
    differ = [name for name in ours if ours[name] != theirs[name]]
    assert differ == [], "\n".join(difflib.unified_diff(theirs[differ[0]].decode(errors="replace").splitlines(),
                                                       ours[differ[0]].decode(errors="replace").splitlines(), lineterm="", n=1))


def test_slurm_options_come_from_the_config_table_then_the_flags(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('epochs = 1\n[slurm]\npartition = "gpu"\ngpus = 1\ntime_min = 30\n')
    args = cli.build_parser().parse_args(["train", "--config", str(toml), "--slurm-time-min", "90"])
    opts = options_from_args(args)
    assert (opts.partition, opts.gpus, opts.time_min, opts.cpus) == ("gpu", 1, 90, 1)
    toml.write_text('[slurm]\ngpu = 1\n')
    with pytest.raises(ConfigError, match="unknown SLURM option 'gpu'"):
        options_from_args(args)


def test_bad_slurm_option_is_one_line_error(tmp_path, capsys):
    code = cli.main(["train", "--executor", "slurm", "--slurm-cpus", "0", "--models-dir", str(tmp_path / "models")])
    assert code == 2 and not list(tmp_path.iterdir())
    assert capsys.readouterr().err.strip() == "engine train: error: SLURM option cpus must be > 0, got 0"
