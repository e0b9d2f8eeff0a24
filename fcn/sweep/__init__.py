"""Hyperparameter sweeps on Ray Tune: ``fcn sweep`` and :func:`run_sweep` (``pip install "fcn-cifar[sweep]"``).

- **Where.** Ray starts inside this process on this machine's cores by default (one trial per CPU); with
  ``address`` (``--address`` / ``$RAY_ADDRESS``) it joins a cluster and ships this package to the workers.
  ``cupy`` trials take one GPU each; a cluster without the GPUs or CPUs a trial asks for is an error at once.
- **Data** is read once by the driver and put in Ray's object store; trials map it read-only (zero copy).
- **Search.** Tune samples the space ``num_samples`` times (times the size of any grid); each trial trains
  with :class:`fcn.Solver` and reports its validation accuracy every epoch, so ASHA stops trials behind their
  peers. A diverging trial is recorded as ``diverged``, not fatal.
- **Results** in ``out``: ``trials.csv`` / ``trials.json`` (one row per trial), ``summary.json``,
  ``sweep.png``, and the best configuration retrained on the full training split, written as ``fcn train``
  writes a run: ``model.npz`` (:func:`fcn.serialization.save_model`; ``fcn evaluate`` and ``fcn predict`` read
  it), ``history.json`` and its checkpoint ``best_checkpoint.npz``.
  Ctrl-C stops the sweep: the table lists what finished, the rest as ``interrupted``; nothing is retrained.
- **Bad input** (an argument, see :data:`SWEEP_ARGUMENTS`; a spec; a space file) is a :class:`SweepInputError`
  naming it, raised before Ray is imported or anything is read or written.

**Search spaces** map a parameter to a spec: any of :data:`PARAMETERS` -- the learning rate and AdamW's
``weight_decay``, the model's ``hidden_dims``, ``weight_scale``, ``reg``, ``normalization``,
``dropout_keep_ratio``, and every searchable training setting of :class:`fcn.training.config.TrainConfig`
(``update_rule``, ``lr_decay``, ``lr_schedule``, ``warmup_epochs``, ``batch_size``, ``clip_grad_norm``,
``augment``). In a JSON or TOML file, or a dict::

    {"learning_rate": {"loguniform": [1e-4, 1e-2]},   # log-uniform between the bounds
     "reg": "1e-3..1",                                 # a range: log-uniform for learning_rate/reg/weight_scale
     "hidden_dims": [100, 200, [512, 256]],            # a list: random choice (one trial each draw)
     "lr_decay": {"grid": [0.9, 0.95]},                # a grid: every value, num_samples times each
     "batch_size": 500}                                # a constant

On the command line the same specs are strings: ``--lr 1e-4..1e-2``, ``--hidden-dims 100,200,512x256``
(``x`` separates the layers of one net), ``--lr-decay grid:0.9,0.95``, ``--reg log:1e-3..1``,
``--lr-decay uniform:0.9..0.99``. ``fcn sweep`` starts from ``--space`` (or :data:`DEFAULT_SPACE`) and each
option replaces one parameter's spec; parameters outside the space keep ``fcn train``'s defaults.
"""

from .results import SweepResult, plot_sweep
from .run import RAY_MISSING_MESSAGE, SWEEP_ARGUMENTS, MissingRayError, check_sweep_arguments, run_sweep, trial_row
from .space import (
    DEFAULT_SPACE,
    PARAMETERS,
    Parameter,
    SweepError,
    SweepInputError,
    load_space,
    parse_spec,
    resolve_space,
    to_tune,
)
from .trial import TrialSettings, retrain_full, train_trial

__all__ = [
    "RAY_MISSING_MESSAGE", "PARAMETERS", "DEFAULT_SPACE", "SweepError", "MissingRayError", "TrialSettings",
    "SweepResult", "parse_spec", "load_space", "resolve_space", "to_tune", "train_trial", "retrain_full",
    "trial_row", "run_sweep", "plot_sweep", "Parameter", "SweepInputError", "SWEEP_ARGUMENTS", "check_sweep_arguments",
]  # fmt: skip
