"""Search spaces: the tunable parameters, their specs (:class:`Dimension`), space files, and sampling."""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy


class SweepError(RuntimeError):
    """A sweep could not run: a bad search space, no usable trial, or a missing dependency."""


#: The tunable parameters: kind of value, whether ranges are sampled on a log scale, and ``fcn train``'s default.
PARAMETERS: dict[str, dict[str, Any]] = {
    "learning_rate": {"type": float, "log": True, "default": 1e-3},
    "reg": {"type": float, "log": True, "default": 0.6},
    "hidden_dims": {"type": "hidden", "log": True, "default": [100]},
    "lr_decay": {"type": float, "log": False, "default": 0.95},
    "batch_size": {"type": int, "log": False, "default": 500},
    "weight_scale": {"type": float, "log": True, "default": None},  # None: 1e-3 shallow, 1e-2 fc (as fcn train)
    "update_rule": {"type": str, "log": False, "default": "sgd"},
}
_ALIASES = {"lr": "learning_rate", "hidden_dim": "hidden_dims", "hidden": "hidden_dims", "decay": "lr_decay"}
_UPDATE_RULES = ("sgd", "sgd_momentum", "rmsprop", "adam")

#: What ``fcn sweep`` searches when given no space at all: the chapter's three knobs around its defaults.
DEFAULT_SPACE: dict[str, Any] = {
    "learning_rate": {"loguniform": [3e-4, 1e-2]},
    "reg": {"loguniform": [1e-3, 1.0]},
    "hidden_dims": [100, 200, 400],
}

_KINDS = ("const", "grid", "choice", "uniform", "loguniform", "randint", "lograndint")
_RANGES = ("uniform", "loguniform", "randint", "lograndint")
_STRING_PREFIXES = {"log": "loguniform", **{k: k for k in _KINDS}}


@dataclass(frozen=True)
class Dimension:
    """One parameter's search spec.

    ``kind`` is ``const`` (``values == (v,)``), ``grid`` (every value, each ``num_samples`` times), ``choice``
    (a random value per trial), or a range ``(low, high)`` sampled ``uniform``/``loguniform`` (floats) or
    ``randint``/``lograndint`` (integers, both bounds included).
    """

    kind: str
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise SweepError(f"unknown search kind {self.kind!r}; expected one of {', '.join(_KINDS)}")
        if not self.values or (self.kind == "const" and len(self.values) != 1):
            raise SweepError(f"{self.kind} needs {'one value' if self.kind == 'const' else 'values'}")
        if self.kind in _RANGES:
            if len(self.values) != 2 or not self.values[0] <= self.values[1]:
                raise SweepError(f"{self.kind} needs two bounds low <= high, got {list(self.values)}")
            if self.kind.startswith("log") and self.values[0] <= 0:
                raise SweepError(f"{self.kind} needs positive bounds, got {list(self.values)}")

    @property
    def grid_size(self) -> int:
        """How many trials this dimension multiplies each sample into (1 unless a grid)."""
        return len(self.values) if self.kind == "grid" else 1

    def sample(self, rng: numpy.random.Generator) -> Any:
        """A random value (grids are expanded by :func:`sample_configs`, not sampled)."""
        v = self.values
        if self.kind in ("const", "grid"):
            return v[0]
        if self.kind == "choice":
            return v[int(rng.integers(len(v)))]
        if self.kind == "uniform":
            return float(rng.uniform(*v))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(v[0]), math.log(v[1]))))
        if self.kind == "randint":
            return int(rng.integers(v[0], v[1] + 1))
        # lograndint as Ray draws it: a log-uniform float on [low, high + 1), rounded down
        return min(int(math.exp(rng.uniform(math.log(v[0]), math.log(v[1] + 1)))), v[1])

    def to_tune(self, tune: Any) -> Any:
        """The equivalent Ray Tune domain (``tune`` is the imported ``ray.tune`` module)."""
        v = self.values
        if self.kind == "const":
            return v[0]
        if self.kind == "grid":
            return tune.grid_search(list(v))
        if self.kind == "choice":
            return tune.choice(list(v))
        if self.kind == "uniform":
            return tune.uniform(*v)
        if self.kind == "loguniform":
            return tune.loguniform(*v)
        # Tune's integer bounds exclude the upper one; ours include it, as a user reading "50..400" expects.
        return (tune.randint if self.kind == "randint" else tune.lograndint)(v[0], v[1] + 1)

    def to_json(self) -> Any:
        """The spec as written in a space file (constants as plain values)."""
        return self.values[0] if self.kind == "const" else {self.kind: list(self.values)}

    def upper(self) -> Any:
        """The largest value this dimension can take (for numbers), used to size ASHA's rungs."""
        return self.values[1] if self.kind in _RANGES else max(self.values)


def grid(*values: Any) -> Dimension:
    """Every value, each ``num_samples`` times: ``grid(0.9, 0.95)``."""
    return Dimension("grid", tuple(values))


def choice(*values: Any) -> Dimension:
    """One value drawn at random per trial: ``choice(100, 200, 400)``."""
    return Dimension("choice", tuple(values))


def uniform(low: float, high: float) -> Dimension:
    """A float drawn uniformly from ``[low, high]``."""
    return Dimension("uniform", (float(low), float(high)))


def loguniform(low: float, high: float) -> Dimension:
    """A float whose logarithm is uniform on ``[log low, log high]`` (learning rates, regularisation)."""
    return Dimension("loguniform", (float(low), float(high)))


def _canonical_name(name: str) -> str:
    key = name.replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in PARAMETERS:
        raise SweepError(f"unknown sweep parameter {name!r}; tunable: {', '.join(PARAMETERS)}")
    return key


def parse_value(name: str, raw: Any) -> Any:
    """``raw`` (from JSON, TOML or the command line) converted to parameter ``name``'s type, and checked.

    Hidden sizes always come back as a list: ``"512x256"``, ``[512, 256]`` and ``100`` -> ``[100]``.
    """
    kind = PARAMETERS[name]["type"]
    try:
        if kind == "hidden":
            if isinstance(raw, str):
                dims = [int(p) for p in raw.lower().split("x")]
            elif isinstance(raw, (list, tuple)):
                dims = [int(p) for p in raw]
            else:
                dims = [int(raw)]
            if not dims or any(d <= 0 for d in dims):
                raise ValueError("sizes must be positive")
            return dims
        if kind is str:
            if raw not in _UPDATE_RULES:
                raise ValueError(f"expected one of {', '.join(_UPDATE_RULES)}")
            return str(raw)
        if isinstance(raw, bool):
            raise ValueError("not a number")
        number = float(raw)
        if kind is int:
            if not number.is_integer() or number <= 0:
                raise ValueError("must be a positive integer")
            return int(number)
        if not math.isfinite(number) or number < 0:
            raise ValueError("must be finite and non-negative")
        return number
    except (TypeError, ValueError) as exc:
        raise SweepError(f"bad value {raw!r} for {name}: {exc}") from None


def parse_spec(name: str, spec: Any) -> Dimension:
    """The :class:`Dimension` for parameter ``name`` given ``spec`` in any accepted form.

    ``spec`` is a :class:`Dimension`; a constant; a list (random choice); a one-key dict
    ``{"grid" | "choice" | "uniform" | "loguniform" | "randint" | "lograndint": [...]}``; or a string as on the
    command line: ``"1e-3"``, ``"a,b,c"`` (choice), ``"lo..hi"`` (a range: log scale for learning rate, reg,
    weight scale and hidden size), or those with a prefix ``grid:``, ``choice:``, ``uniform:``, ``log:``.
    """
    name = _canonical_name(name)
    info = PARAMETERS[name]
    kind: str = ""  # "" = decide from the values: one value is a constant, a range follows the parameter's scale
    if isinstance(spec, Dimension):
        kind, raw = spec.kind, list(spec.values)
    elif isinstance(spec, Mapping):
        if len(spec) != 1:
            raise SweepError(f"{name}: a spec dict has exactly one key (one of {', '.join(_KINDS)}), got {dict(spec)}")
        kind, value = next(iter(spec.items()))
        kind = {"log": "loguniform", "range": "uniform"}.get(kind, kind)
        raw = list(value) if isinstance(value, (list, tuple)) else [value]
    elif isinstance(spec, (list, tuple)):
        # A list is always a set of alternatives; a 2-layer net is written [[512, 256]] or "512x256".
        kind, raw = "choice", list(spec)
    elif isinstance(spec, str):
        prefix, sep, rest = spec.strip().partition(":")
        if sep and prefix in _STRING_PREFIXES:
            kind = _STRING_PREFIXES[prefix]
        else:
            rest = spec.strip()
        if ".." in rest:
            if kind in ("grid", "choice", "const"):
                raise SweepError(f"{name}: {kind} takes a comma-separated list, not a range ({spec!r})")
            raw = [p.strip() for p in rest.split("..", 1)]
            kind = kind or ("loguniform" if info["log"] else "uniform")
        else:
            raw = [p.strip() for p in rest.split(",") if p.strip()]
            if kind in _RANGES:
                raise SweepError(f"{name}: {kind} takes a range lo..hi, got {spec!r}")
            kind = kind or ("choice" if len(raw) > 1 else "const")
    else:
        kind, raw = "const", [spec]

    if kind not in _RANGES:
        return Dimension(kind, tuple(parse_value(name, v) for v in raw))
    if info["type"] is str:
        raise SweepError(f"{name} cannot be drawn from a range; give a list of values")
    if info["type"] is float:
        return Dimension(kind, tuple(float(parse_value(name, v)) for v in raw))
    # Integer parameters take integer ranges (a hidden-size range means one layer of that size).
    bounds = [parse_value(name, v) for v in raw]
    bounds = [b[0] if isinstance(b, list) and len(b) == 1 else b for b in bounds]
    if not all(isinstance(b, int) for b in bounds):
        raise SweepError(f"{name}: a range needs two integers, got {raw}")
    return Dimension("lograndint" if kind in ("loguniform", "lograndint") else "randint", tuple(bounds))


def load_space(path: str | os.PathLike[str]) -> dict[str, Dimension]:
    """Read a search space from a JSON or TOML file (``.toml``; needs Python 3.11+ or the ``tomli`` package).

    The file maps parameters to specs (see :func:`parse_spec`); a top-level ``space`` table is accepted too.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SweepError(f"cannot read search space {path}: {exc}") from exc
    if path.suffix.lower() == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # the package supports 3.10, where only the tomli backport has it
            try:
                import tomli as tomllib
            except ModuleNotFoundError:
                raise SweepError(
                    f"{path}: reading TOML needs Python 3.11+ or pip install tomli; or write the space as JSON"
                ) from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SweepError(f"{path} is not valid TOML: {exc}") from exc
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SweepError(f"{path} is not valid JSON: {exc}") from exc
    if isinstance(raw, dict) and isinstance(raw.get("space"), dict) and len(raw) == 1:
        raw = raw["space"]
    if not isinstance(raw, dict):
        raise SweepError(f"{path} must hold a table/object of parameter -> spec")
    return {_canonical_name(k): parse_spec(k, v) for k, v in raw.items()}


def resolve_space(
    space: Mapping[str, Any] | str | os.PathLike[str] | None, model: str = "shallow"
) -> dict[str, Dimension]:
    """Every tunable parameter's :class:`Dimension`: ``space`` (a mapping or a file; ``None``: the
    :data:`DEFAULT_SPACE`), and ``fcn train``'s defaults as constants for the parameters it leaves out."""
    if space is None:
        given = {k: parse_spec(k, v) for k, v in DEFAULT_SPACE.items()}
    elif isinstance(space, (str, os.PathLike)):
        given = load_space(space)
    else:
        given = {}
        for k, v in space.items():
            key = _canonical_name(k)
            if key in given:
                raise SweepError(f"parameter {key} given twice (as {k!r})")
            given[key] = parse_spec(key, v)
    full: dict[str, Dimension] = {}
    for name, info in PARAMETERS.items():
        default = info["default"]
        if name == "weight_scale" and default is None:
            default = 1e-3 if model == "shallow" else 1e-2
        full[name] = given.get(name, Dimension("const", (default,)))
    if model == "shallow":
        multi = [v for v in full["hidden_dims"].values if isinstance(v, list) and len(v) != 1]
        if multi:
            raise SweepError(f"model 'shallow' has one hidden layer; hidden sizes {multi} need model 'fc'")
    return full


def normalise_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's config with ``hidden_dims`` always a list (an integer range draws plain ints)."""
    out = dict(config)
    if "hidden_dims" in out:
        out["hidden_dims"] = parse_value("hidden_dims", out["hidden_dims"])
    return out


def sample_configs(space: Mapping[str, Dimension], num_samples: int, seed: int | None = 0) -> list[dict[str, Any]]:
    """The trial configurations, as Ray Tune's basic search would make them: for each of ``num_samples``
    samples, every combination of the grid values, with the random dimensions drawn afresh per trial.

    Used by the sequential engine; Ray draws its own (seeded by ``search_seed``) from :meth:`Dimension.to_tune`.
    """
    if num_samples < 1:
        raise SweepError(f"num_samples must be at least 1, got {num_samples}")
    rng = numpy.random.default_rng(seed)
    grid_names = [k for k, d in space.items() if d.kind == "grid"]
    configs = []
    for _ in range(num_samples):
        for combo in itertools.product(*(space[k].values for k in grid_names)):
            config = {k: d.sample(rng) for k, d in space.items() if d.kind != "grid"}
            config.update(zip(grid_names, combo, strict=True))
            # in the space's key order, so tables list parameters in the same order every time
            configs.append(normalise_config({k: config[k] for k in space}))
    return configs
