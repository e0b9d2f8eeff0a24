"""The GitHub Actions workflows (.github/workflows): valid, and in step with the README, .ci/run and pyproject.

ci.yml runs the README's test command on Linux and macOS for every Python the package declares, plus ``.ci/run``;
gpu.yml runs the one-command GPU check on a self-hosted ``gpu`` runner and uploads its folder. The files are
checked against the workflow schema that check-jsonschema ships (the ``dev`` extra; offline), and by actionlint
where it is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with the dev extra's jupytext)")


def _workflow(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as the boolean true
    return data


def _runs(job: dict) -> list[str]:
    return [step["run"].strip() for step in job["steps"] if "run" in step]


def _readme_test_command() -> list[str]:
    """The README's test command, split at ``&&``: its install and its pytest call."""
    text = (ROOT / "README.md").read_text()
    line = next(line for line in text.splitlines() if line.rstrip().endswith("&& python -m pytest"))
    return [part.strip() for part in line.split("&&")][2:]  # after the venv's creation and activation


def _schema_check(*paths: Path) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("check_jsonschema", reason="check-jsonschema is not installed (it comes with the dev extra)")
    command = [
        sys.executable,
        "-m",
        "check_jsonschema",
        "--builtin-schema",
        "vendor.github-workflows",
        *map(str, paths),
    ]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_the_workflows_follow_the_github_workflow_schema():
    result = _schema_check(*sorted(WORKFLOWS.glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_refuses_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"  # a job without runs-on, a step that is neither `uses` nor `run`
    broken.write_text("on: push\njobs:\n  test:\n    steps:\n      - name: nothing\n        with: {a: 1}\n")
    result = _schema_check(broken)
    assert result.returncode != 0, result.stdout


def test_actionlint_finds_nothing_where_it_is_installed():
    if shutil.which("actionlint") is None:
        pytest.skip("actionlint is not installed (a Go binary: https://github.com/rhysd/actionlint)")
    result = subprocess.run(["actionlint"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command_on_linux_and_macos_for_every_declared_python():
    job = _workflow("ci.yml")["jobs"]["tests"]
    assert _runs(job) == _readme_test_command()
    matrix = job["strategy"]["matrix"]
    assert {"ubuntu-latest", "macos-latest"} <= set(matrix["os"])
    classifiers = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["classifiers"]
    declared = [
        m.group(1) for c in classifiers if (m := re.fullmatch(r"Programming Language :: Python :: (3\.\d+)", c))
    ]
    assert matrix["python"] == declared
    assert job["strategy"]["fail-fast"] is False  # one failing platform does not hide the others


def test_ci_also_runs_the_local_ci_script():
    jobs = _workflow("ci.yml")["jobs"].values()
    assert any(".ci/run" in _runs(job) for job in jobs)
    assert (ROOT / ".ci" / "run").stat().st_mode & 0o111, ".ci/run must be executable"


def test_the_gpu_workflow_runs_the_one_command_check_on_a_gpu_runner_and_keeps_its_folder():
    workflow = _workflow("gpu.yml")
    assert {"schedule", "workflow_dispatch"} <= set(workflow["on"])
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == ["self-hosted", "gpu"]
    command = next(run for run in _runs(job) if "benchmarks/gpu_run.py" in run)
    outdir = re.search(r"benchmarks/gpu_run\.py (\S+)", command).group(1)
    upload = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["path"].rstrip("/") == outdir and upload["if"] == "always()"
    assert "gpu" in yaml.safe_load((ROOT / ".github" / "actionlint.yaml").read_text())["self-hosted-runner"]["labels"]


def test_every_extra_is_listed_in_getting_started_and_contributing_shows_the_ci_install():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    table = (ROOT / "docs" / "getting-started.md").read_text()
    listed = set(re.findall(r"^\| ((?:`[\w-]+`(?:, )?)+) \|", table, flags=re.MULTILINE))
    names = {name for cell in listed for name in re.findall(r"`([\w-]+)`", cell)}
    assert names == set(extras)
    install = re.search(r'pip install --quiet (-e "\.\[[\w,]+\]")', (ROOT / ".ci" / "run").read_text()).group(1)
    assert install in (ROOT / "docs" / "contributing.md").read_text()
