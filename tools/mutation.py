"""Mutation testing of fcn's core, one module at a time, with a score table at the end.

    pip install -e ".[dev,mutation]"
    nice -n 10 python tools/mutation.py                       # every core module
    nice -n 10 python tools/mutation.py backend validation    # some of them
    python tools/mutation.py --table                          # only print the table of the last runs

Each module is one ``mutmut run "fcn.<module>.*"``: mutmut (3.x, configured in ``[tool.mutmut]`` of
pyproject.toml) copies the package into ``./mutants``, records once which core tests call which function,
and then runs every mutant against only the tests that reach the mutated function, stopping at the first
failure. Mutants known to be equivalent (no behaviour can tell them apart from the original) are listed,
each with its reason, in ``tools/mutation-equivalent.txt`` and left out of the score.

Mutants of lines that run only on a GPU (a CuPy-only branch inside a backend-agnostic function) are listed there
too, their reason starting with "GPU only": CPU tests cannot reach them, as they cannot reach the GPU-only modules,
which are not mutated at all. They get their own column and are left out of the score as well.

Score = (killed + timeout) / (mutants - equivalent - GPU only - skipped - not run). See
docs/contributing-mutation.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT_FILE = ROOT / "tools" / "mutation-equivalent.txt"
#: how the reason of a mutant in EQUIVALENT_FILE starts when it is not equivalent but reachable only on a GPU
GPU_ONLY = "GPU only"

#: The core modules, in the order they are run (cheapest tests first).
CORE = [
    "gradient_check",
    "layer_utils",
    "layers",
    "normalization",
    "validation",
    "backend",
    "modules",
    "ops.reference",
    "ops.numpy_ops",
    "ops.switches",
    "optim",
    "models",
    "training.config",
    "training.optimizer",
    "training.schedules",
    "training.step",
    "training.history",
    "training.interrupts",
    "training.checkpoint",
    "training.augment",
    "solver",
    "atomic",
    "npz",
    "serialization",
    "factory",
    "inference",
    "data",
]
#: fcn/ modules that are deliberately not mutated (also in do_not_mutate of [tool.mutmut]): the command line, the
#: plots and the environment report, and the GPU-only code (CPU tests cannot reach it).
NOT_CORE = {"cli", "plotting", "sysinfo", "__init__", "ops.cupy_ops", "ops.cuda", "training.cuda_graph"}


def source_file(module: str) -> str:
    """``training.checkpoint`` -> ``fcn/training/checkpoint.py``."""
    return f"fcn/{module.replace('.', '/')}.py"


# mutmut's exit-code meanings (mutmut.stats.status_by_exit_code), folded into the table's columns
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 37: "killed"}
STATUS.update({code: "timeout" for code in (36, -24, 24, 152, 255)})


def equivalent_mutants() -> dict[str, str]:
    """``mutant name -> reason`` from tools/mutation-equivalent.txt (``name  # reason`` lines)."""
    found: dict[str, str] = {}
    if EQUIVALENT_FILE.exists():
        for line in EQUIVALENT_FILE.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, reason = line.partition("#")
            found[name.strip()] = reason.strip()
    return found


def results(module: str) -> dict[str, str]:
    """``mutant name -> status`` of one module's last run (from mutmut's ``mutants/fcn/<module>.py.meta``)."""
    meta = ROOT / "mutants" / f"{source_file(module)}.meta"
    if not meta.exists():
        return {}
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {name: ("not checked" if code is None else STATUS.get(code, "suspicious")) for name, code in codes.items()}


def mutant_names(module: str) -> list[str]:
    """The module's mutant names, sorted (known once mutmut has generated the mutants)."""
    return sorted(results(module))


def pick(module: str, every: int, pending: bool) -> list[str] | None:
    """Which mutants to run: ``None`` for all of them, else an explicit list.

    ``every=N`` keeps every N-th mutant by name (a fixed, repeatable sample); ``pending`` keeps only those
    not killed yet (no result, or survived): an interrupted run goes on, new tests get their check.
    """
    if every <= 1 and not pending:
        return None
    status = results(module)
    meta = ROOT / "mutants" / f"{source_file(module)}.meta"
    if not status or (ROOT / source_file(module)).stat().st_mtime > meta.stat().st_mtime:
        # never generated, or the source changed since (its mutants' names shift): a run with a pattern that
        # matches no mutant generates them, so that the sample is drawn from the mutants that will be run
        _mutmut([f"fcn.{module}.__generate_only__*"], 1, module)
        status = results(module)
    names = sorted(status)[:: max(every, 1)]
    if pending:
        names = [n for n in names if status[n] in ("not checked", "survived", "no tests", "suspicious")]
    return names


def _mutmut(names: list[str], max_children: int, module: str) -> None:
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children), *names]
    # mutmut's progress spinner goes to a log file (mutants/<module>.log), not the terminal
    log = ROOT / "mutants" / f"{module}.log"
    log.parent.mkdir(exist_ok=True)
    with open(log, "w") as out:
        code = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT).returncode
    if code not in (0, 1):
        sys.stdout.write(log.read_text()[-3000:])
        raise SystemExit(f"mutmut failed on {source_file(module)} (exit code {code}); its output: {log}")


def run_module(module: str, max_children: int, every: int = 1, pending: bool = False) -> float:
    start = time.monotonic()
    names = pick(module, every, pending)
    if names is None:
        _mutmut([f"fcn.{module}.*"], max_children, module)
    elif names:
        _mutmut(names, max_children, module)
    return time.monotonic() - start


def sample_of(module: str, every: int) -> set[str] | None:
    return None if every <= 1 else set(mutant_names(module)[::every])


def table(modules: list[str], equivalent: dict[str, str], every: int = 1) -> tuple[str, list[str]]:
    header = "| module | mutants | killed | survived | equivalent | GPU only | timeouts | no tests | not run | score |"
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    total: Counter[str] = Counter()
    survivors: list[str] = []
    for module in modules:
        res = results(module)
        if not res:
            continue
        sample = sample_of(module, every)
        if sample is not None:
            res = {name: status for name, status in res.items() if name in sample}
        c: Counter[str] = Counter()
        for name, status in res.items():
            c["mutants"] += 1
            if name in equivalent:
                c["GPU only" if equivalent[name].startswith(GPU_ONLY) else "equivalent"] += 1
            elif status in ("survived", "no tests", "suspicious"):
                c[status] += 1
                survivors.append(f"{name}: {status}")
            else:
                c[status] += 1
        total.update(c)
        lines.append(_row(source_file(module), c))
    lines.append(_row("**all**", total))
    return "\n".join(lines), survivors


def _row(label: str, c: Counter[str]) -> str:
    counted = c["mutants"] - c["equivalent"] - c["GPU only"] - c["skipped"] - c["not checked"]
    score = 100.0 * (c["killed"] + c["timeout"]) / counted if counted else float("nan")
    cells = [c["mutants"], c["killed"], c["survived"] + c["suspicious"], c["equivalent"], c["GPU only"]]
    cells += [c["timeout"], c["no tests"], c["not checked"]]
    return f"| {label} | " + " | ".join(str(x) for x in cells) + f" | {score:.1f} % |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"core modules to mutate (default: {' '.join(CORE)})")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested in parallel (default 2)")
    parser.add_argument("--table", action="store_true", help="print the table of the last runs, run nothing")
    parser.add_argument(
        "--every", type=int, default=1, help="run (and count) only every N-th mutant of each module: a fixed sample"
    )
    parser.add_argument(
        "--pending", action="store_true", help="run only the mutants not killed yet (no result, or survived)"
    )
    parser.add_argument("--fail-under", type=float, default=None, help="exit 1 when the total score is lower")
    args = parser.parse_args(argv)

    present = [m for m in CORE if (ROOT / source_file(m)).exists()]
    modules = args.modules or present
    for m in modules:
        if m in NOT_CORE or not (ROOT / source_file(m)).exists():
            parser.error(f"{source_file(m)} is not a core module here; choose from {', '.join(present)}")

    if not args.table:
        for m in modules:
            print(f"mutating {source_file(m)} ...", flush=True)
            seconds = run_module(m, args.max_children, args.every, args.pending)
            print(f"    done in {seconds / 60:.1f} min", flush=True)

    equivalent = equivalent_mutants()
    text, survivors = table(modules, equivalent, args.every)
    print(text)
    if survivors:
        print("\nnot killed (see `mutmut show NAME`):")
        print("\n".join(f"  {s}" for s in sorted(survivors)))
    if args.fail_under is not None:
        last = text.splitlines()[-1]
        score = float(last.rsplit("|", 2)[-2].strip().rstrip(" %"))
        if not score >= args.fail_under:
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
