"""The README's commands, the console entry points and the packaging do what they promise."""
import re
import subprocess
import sys
import zipfile
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


def test_wheel_ships_templates_where_the_app_finds_them(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "study_templates/base.html" in names and "contracts/stimulus_manifest.v1.schema.json" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # Import the app from the unpacked wheel only (not the checkout) and render a template.
    probe = ("import study, flask; app = study.create_app({'SQLALCHEMY_DATABASE_URI': 'sqlite://'});"
             "assert study.__file__.startswith(%r), study.__file__;"
             "ctx = app.test_request_context(); ctx.push();"
             "html = flask.render_template('base.html');"
             "print('<main' in html, study.templates_dir())") % str(site)
    result = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {probe}"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rendered, where = result.stdout.split()
    assert rendered == "True" and where.startswith(str(site))
