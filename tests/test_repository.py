"""The README's commands, the console entry points and the packaging do what they promise."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, VENV_BIN


def readme_commands() -> list[str]:
    block = re.search(r"## Two commands\s+```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_readme_names_two_make_targets_that_exist():
    commands = readme_commands()
    assert commands == ["make demo", "make test"]
    for cmd in commands:
        dry = subprocess.run([*cmd.split(), "-n"], cwd=REPO, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr


@pytest.mark.parametrize("cmd", [
    [str(VENV_BIN / "engine"), "--help"],
    [str(VENV_BIN / "engine"), "data", "--help"],
    [str(VENV_BIN / "flask"), "--app", "study", "--help"],
    [sys.executable, "analysis/report.py", "--help"],
    [sys.executable, "-m", "analysis.report", "--help"],
    [sys.executable, "-m", "benchmarks", "--help"],
])
def test_every_entry_point_prints_help(cmd):
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


def test_no_tracked_file_leans_on_a_folder_outside_the_repository():
    """The repository stands alone: what a maintainer needs from outside is summarised in docs/."""
    outside = "../" + "shared"  # spelled in two parts so this file does not match itself
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    leaning = [name for name in tracked if name and (REPO / name).is_file()
               and outside in (REPO / name).read_bytes().decode("utf-8", "replace")]
    assert leaning == []
