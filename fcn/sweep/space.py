"""Search spaces: the tunable parameters, the one parser of specs, and the specs' Ray Tune objects.

Every spec (a command-line string, a space-file value, a dict) goes through :func:`parse_spec` into one
canonical form, a constant or ``{kind: [values]}`` (what space files hold and ``summary.json`` records);
:func:`to_tune` maps that onto Tune's own search-space objects, so the sampling is Tune's.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..factory import CHAPTER_DEFAULTS, HYPERPARAMETERS, MODELS, ModelConfig, model_fields
from ..training.config import TrainConfig, setting_fields


class SweepError(RuntimeError):
    """A sweep could not run: a bad search space or setting, no usable trial, or a missing dependency."""


class SweepInputError(SweepError, ValueError):
    """The sweep's input is wrong: an argument, a search space, a space file. Raised before anything starts.

    ``argument``: the argument at fault, when it is one (``fcn sweep`` names its option instead); ``problem``:
    what is wrong with it. The message is both: ``reduction_factor must be a number >= 2, got 1``.
    """

    def __init__(self, problem: str, argument: str | None = None) -> None:
        super().__init__(f"{argument} {problem}" if argument else problem)
        self.problem, self.argument = problem, argument


@dataclass(frozen=True)
class Parameter:
    """A searchable setting. ``kind``: how its values are read and a plain range ``lo..hi`` is drawn --
    ``"log"`` (numbers, log-uniform), ``"linear"`` (numbers, uniform), ``"int"`` (positive integers),
    ``"hidden"`` (lists of layer sizes; a range is one layer, log-uniform), ``"choice"`` (one of ``choices``,
    no range); ``default``: ``fcn train``'s value, given to a trial when the space leaves the parameter out."""

    kind: str
    default: Any
    choices: tuple[Any, ...] = ()
    help: str = ""


def _parameters() -> dict[str, Parameter]:
    """The optimiser's hyperparameters, then the searchable fields of ModelConfig and of TrainConfig."""
    params = {name: Parameter("log", CHAPTER_DEFAULTS.get(name), help=text) for name, text in HYPERPARAMETERS.items()}
    model = ModelConfig()
    for fields, defaults in ((model_fields(), model), (setting_fields(), TrainConfig())):
        for f in fields:
            if f.metadata["search"]:
                default = CHAPTER_DEFAULTS.get(f.name, getattr(defaults, f.name))
                choices = tuple(f.metadata.get("choices", ()))
                params[f.name] = Parameter(f.metadata["search"], default, choices, f.metadata["help"])
    return params


#: The tunable parameters by name: every searchable setting of the model and of training (see
#: :func:`fcn.training.config.setting_fields`), plus the learning rate and AdamW's weight decay. The weight
#: decay is used by the rules that take it (adamw) and ignored by the others.
PARAMETERS: dict[str, Parameter] = _parameters()
_ALIASES = {
    "lr": "learning_rate",
    "hidden_dim": "hidden_dims",
    "hidden": "hidden_dims",
    "decay": "lr_decay",
    "dropout_keep": "dropout_keep_ratio",
}

#: What ``fcn sweep`` searches when given no space: the chapter's three knobs around its defaults.
DEFAULT_SPACE: dict[str, Any] = {
    "learning_rate": {"loguniform": [3e-4, 1e-2]},
    "reg": {"loguniform": [1e-3, 1.0]},
    "hidden_dims": {"choice": [[100], [200], [400]]},
}

_RANGES = ("uniform", "loguniform", "randint", "lograndint")
_KINDS = ("grid", "choice", *_RANGES)
_PREFIXES = {"log": "loguniform", **{k: k for k in _KINDS}}


def canonical_name(name: str) -> str:
    """``lr`` -> ``learning_rate``, ``lr-decay`` -> ``lr_decay``; :class:`SweepError` for an unknown name."""
    key = str(name).strip().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in PARAMETERS:
        raise SweepInputError(f"unknown sweep parameter {name!r}; expected one of {', '.join(PARAMETERS)}")
    return key


def _choice(param: Parameter, raw: Any) -> Any:
    """One of ``param.choices``; ``"none"`` is ``None`` and ``+`` joins names (``flip+crop``: the
    augmentation ``"flip,crop"``, since a comma separates the choices on the command line)."""
    value = raw.strip().lower().replace("+", ",") if isinstance(raw, str) else raw
    value = None if value == "none" else value
    if value not in param.choices:
        shown = ", ".join("none" if c is None else str(c).replace(",", "+") for c in param.choices)
        raise ValueError(f"expected one of {shown}")
    return value


def parse_value(name: str, raw: Any) -> Any:
    """One value of parameter ``name`` (from text or JSON), type-checked: hidden sizes become a list of ints."""
    param = PARAMETERS[name]
    try:
        if param.kind == "hidden":  # 100, "100", "512x256", [512, 256]
            parts = raw.lower().split("x") if isinstance(raw, str) else raw if isinstance(raw, list) else [raw]
            if any(isinstance(p, bool) for p in parts):  # int(True) is 1: a flag is not a layer size
                raise ValueError("sizes must be positive integers, not true/false")
            dims = [int(p) for p in parts]
            if not dims or any(d <= 0 or float(p) != d for p, d in zip(parts, dims, strict=True)):
                raise ValueError("sizes must be positive integers")
            return dims
        if param.kind == "choice":
            return _choice(param, raw)
        if param.default is None and (raw is None or str(raw).strip().lower() == "none"):
            return None  # off (no clipping, no weight decay) or the model's own default weight scale
        if isinstance(raw, bool):
            raise ValueError("not a number")
        number = float(raw)
        if param.kind == "int":
            if not number.is_integer() or number <= 0:
                raise ValueError("must be a positive integer")
            return int(number)
        if not math.isfinite(number) or number < 0:
            raise ValueError("must be finite and non-negative")
        return number
    except (TypeError, ValueError, AttributeError) as exc:
        raise SweepInputError(f"bad value {raw!r} for {name}: {exc}") from None


def _split_spec(name: str, spec: Any) -> tuple[str | None, list[Any]]:
    """A spec's search kind (``None``: a constant; a prefix or ``log`` spelled out) and its raw values."""
    if isinstance(spec, Mapping):
        if len(spec) != 1:
            raise SweepInputError(
                f"{name}: a spec dict has exactly one key (one of {', '.join(_KINDS)}), got {dict(spec)}"
            )
        ((kind, raw),) = spec.items()
        if kind not in _PREFIXES:
            raise SweepInputError(f"{name}: unknown search kind {kind!r}; expected one of {', '.join(_KINDS)}")
        return _PREFIXES[kind], list(raw) if isinstance(raw, (list, tuple)) else [raw]
    if isinstance(spec, (list, tuple)):
        return "choice", list(spec)
    if not isinstance(spec, str):
        return None, [spec]
    prefix, sep, text = spec.strip().partition(":")
    kind, text = (_PREFIXES[prefix], text) if sep and prefix in _PREFIXES else (None, spec.strip())
    if ".." in text:
        if kind in ("grid", "choice"):
            raise SweepInputError(f"{name}: {kind} takes a comma-separated list, not a range ({spec!r})")
        kind = kind or ("loguniform" if PARAMETERS[name].kind in ("log", "hidden") else "uniform")
        return kind, [p.strip() for p in text.split("..", 1)]
    if kind in _RANGES:
        raise SweepInputError(f"{name}: {kind} takes a range lo..hi, got {spec!r}")
    raw = [p.strip() for p in text.split(",") if p.strip()]
    return kind or ("choice" if len(raw) > 1 else None), raw


def _range(name: str, kind: str, raw: list[Any]) -> dict[str, list[Any]]:
    """The canonical spec of a range ``kind`` (one of the range kinds) between the two bounds in ``raw``."""
    typ = PARAMETERS[name].kind
    if typ == "choice":
        raise SweepInputError(f"{name} cannot be drawn from a range; give a list of values")
    if len(raw) != 2:
        raise SweepInputError(f"{name}: a range needs two bounds, got {raw}")
    lo, hi = (parse_value(name, v) for v in raw)
    if typ in ("int", "hidden"):  # integers: a hidden-size range is one hidden layer of that size
        lo, hi = (b[0] if isinstance(b, list) and len(b) == 1 else b for b in (lo, hi))
        if not (isinstance(lo, int) and isinstance(hi, int)):
            raise SweepInputError(f"{name}: a range needs two integers, got {raw}")
        kind = "lograndint" if kind in ("loguniform", "lograndint") else "randint"
    elif kind in ("randint", "lograndint"):
        raise SweepInputError(f"{name} takes uniform or loguniform ranges, not {kind}")
    if not lo <= hi:
        raise SweepInputError(f"{name}: {kind} needs two bounds low <= high, got {[lo, hi]}")
    if kind.startswith("log") and lo <= 0:
        raise SweepInputError(f"{name}: {kind} needs positive bounds, got {[lo, hi]}")
    return {kind: [lo, hi]}


def parse_spec(name: str, spec: Any) -> Any:
    """The canonical spec of parameter ``name``: a constant, or ``{kind: [values]}``.

    ``spec`` is a constant; a list (a random choice); a one-key dict ``{"grid" | "choice" | "uniform" |
    "loguniform" | "log" | "randint" | "lograndint": [...]}``; or a string as on the command line: ``"1e-3"``,
    ``"a,b,c"`` (choice), ``"lo..hi"`` (a range: log scale for learning rate, reg, weight scale and hidden
    size), or those with a prefix ``grid:``, ``choice:``, ``uniform:``, ``log:``. Hidden sizes are lists
    (``"512x256"`` is one two-layer net); integer parameters draw integers (both bounds included).
    """
    name = canonical_name(name)
    kind, raw = _split_spec(name, spec)
    if not raw:
        raise SweepInputError(f"{name}: no values in {spec!r}")
    if kind is None or (kind == "choice" and len(raw) == 1):  # a choice of one is that constant
        return parse_value(name, raw[0])
    if kind not in _RANGES:
        return {kind: [parse_value(name, v) for v in raw]}
    return _range(name, kind, raw)


def _toml_parser(path: Path) -> Callable[[str], Any]:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads
    raise SweepInputError(f"{path}: reading TOML needs Python 3.11+; write the space as JSON")


def _read_space_file(path: Path) -> Any:
    """The parsed contents of a JSON or TOML space file; every way it can be unreadable is one error naming it."""
    toml = path.suffix.lower() == ".toml"
    parse = _toml_parser(path) if toml else json.loads
    if path.exists() and not path.is_file():  # a FIFO or a device would block the read or never end
        raise SweepInputError(f"search space {path} is not a regular file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SweepInputError(f"cannot read search space {path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise SweepInputError(f"search space {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return parse(text)
    except RecursionError:  # both parsers recurse per nesting level; no search space is nested that deep
        raise SweepInputError(f"search space {path} is nested too deeply to be a search space") from None
    except ValueError as exc:  # JSON's and TOML's decode errors are both ValueErrors
        raise SweepInputError(f"{path} is not valid {'TOML' if toml else 'JSON'}: {exc}") from None


def _canonical_space(space: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter -> canonical spec; a parameter given twice, under any two of its names, is an error."""
    given: dict[str, Any] = {}
    names: dict[str, str] = {}
    for k, v in space.items():
        key = canonical_name(k)
        if key in given:
            raise SweepInputError(f"parameter {key} given twice (as {names[key]!r} and {k!r})")
        given[key], names[key] = parse_spec(key, v), str(k)
    return given


def load_space(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a search space (parameter -> spec; a top-level ``space`` table is accepted too) from a JSON or TOML
    file (``.toml``: Python 3.11+). Any problem is a :class:`SweepInputError` naming the file."""
    path = Path(path)
    raw = _read_space_file(path)
    if isinstance(raw, dict) and len(raw) == 1 and isinstance(raw.get("space"), dict):
        raw = raw["space"]
    if not isinstance(raw, dict):
        raise SweepInputError(f"{path} must hold a table/object of parameter -> spec")
    try:
        return _canonical_space(raw)
    except SweepInputError as exc:
        raise SweepInputError(f"{path}: {exc}") from None


def resolve_space(space: Mapping[str, Any] | str | os.PathLike[str] | None, model: str = "shallow") -> dict[str, Any]:
    """Every tunable parameter's canonical spec: ``space`` (a mapping, a file, or ``None`` for
    :data:`DEFAULT_SPACE`), with ``fcn train``'s defaults as constants for the parameters it leaves out."""
    if isinstance(space, (str, os.PathLike)):
        given = load_space(space)
    else:
        given = _canonical_space(DEFAULT_SPACE if space is None else space)
    full = {}
    for name, param in PARAMETERS.items():
        default = param.default
        if name == "weight_scale" and default is None:
            default = MODELS[model][1]  # the model's own default (1e-3 shallow, 1e-2 fc), as fcn train
        full[name] = given.get(name, default)
    fc_only = [k for k in ("normalization", "dropout_keep_ratio") if full[k] != PARAMETERS[k].default]
    if model == "shallow" and fc_only:
        raise SweepInputError(f"{' and '.join(fc_only)} need model 'fc' (model 'shallow' has neither)")
    hidden = full["hidden_dims"]
    nets = next(iter(hidden.values())) if isinstance(hidden, dict) else [hidden]
    multi = [v for v in nets if isinstance(v, list) and len(v) != 1]
    if model == "shallow" and multi:
        raise SweepInputError(f"model 'shallow' has one hidden layer; hidden sizes {multi} need model 'fc'")
    return full


def to_tune(spec: Any, tune: Any) -> Any:
    """The Ray Tune search-space object for a canonical spec (``tune`` is the imported ``ray.tune``)."""
    if not isinstance(spec, dict):
        return spec
    ((kind, values),) = spec.items()
    if kind in ("randint", "lograndint"):  # Tune excludes the upper bound; a user reading 50..400 expects it in
        values = [values[0], values[1] + 1]
    return (
        tune.grid_search(values)
        if kind == "grid"
        else tune.choice(values)
        if kind == "choice"
        else (getattr(tune, kind)(*values))
    )
