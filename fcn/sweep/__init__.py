"""Hyperparameter sweeps: ``fcn sweep`` and :func:`run_sweep`, on Ray Tune (optional) or a plain loop.

The chapter's next step is tuning the hidden size, learning rate, regularisation and decay. Rather than a
home-made scheduler, the search runs on `Ray Tune <https://docs.ray.io/en/latest/tune/>`_, installed with the
``sweep`` extra (``pip install "fcn-cifar[sweep]"``, which pulls ``ray[tune]``):

- **Where it runs.** Locally by default: Ray starts inside this process and uses this machine's cores, one
  trial per CPU (``cpus_per_trial``). Given ``address`` (``--address`` or ``$RAY_ADDRESS``) it joins a Ray
  cluster instead and ships this ``fcn`` package to the workers (``runtime_env`` ``py_modules``), so the
  nodes need only Ray and ``fcn``'s dependencies; ``out`` should then be on storage all nodes can write
  (Tune's ``storage_path``). Trials on the ``cupy`` backend ask for one GPU each, so Ray places one trial
  per GPU.
- **Data.** CIFAR-10 is read and preprocessed once, by the driver, and put in Ray's object store
  (``ray.put``); trials receive the reference through ``tune.with_parameters`` and map the arrays read-only
  (zero copy) from their node's store, so a node fetches the data at most once however many trials it runs.
- **Search.** A search space (see below) sampled ``num_samples`` times (times the size of any grid), every
  trial trained by :class:`fcn.Solver` (float32 by default) and reporting its validation accuracy after
  every epoch.
  ASHA (``ASHAScheduler``) stops trials that are behind their peers at the same epoch, so a bad learning
  rate costs a couple of epochs, not a full run. A diverging trial (:class:`fcn.TrainingDiverged`) is
  recorded as ``diverged`` with accuracy NaN; the sweep goes on.
- **Results** in ``out``: ``trials.csv`` and ``trials.json`` (one row per trial: parameters, best val
  accuracy, iterations, seconds, status), ``summary.json`` (settings, space, best trial, retrained model,
  machine, wall time), ``sweep.png`` (val accuracy against learning rate and reg), and the best
  configuration retrained on the full training split without early stopping, saved with
  :meth:`fcn.Solver.save_checkpoint` as ``best_checkpoint.npz``.

Without Ray, ``engine="sequential"`` (``--engine sequential``) runs the sampled configurations one after
another in this process, with no early stopping: fine for a handful of small trials. It is never chosen
silently; asking for Ray without it installed raises :class:`MissingRayError` naming the extra.

**Search spaces** map a parameter (``learning_rate``, ``reg``, ``hidden_dims``, ``lr_decay``,
``batch_size``, ``weight_scale``, ``update_rule``) to a spec. In a JSON or TOML file, or a dict::

    {"learning_rate": {"loguniform": [1e-4, 1e-2]},   # log-uniform between the bounds
     "reg": "1e-3..1",                                 # a range: log-uniform for learning_rate/reg/weight_scale
     "hidden_dims": [100, 200, [512, 256]],            # a list: random choice (one trial each draw)
     "lr_decay": {"grid": [0.9, 0.95]},                # a grid: every value, num_samples times each
     "batch_size": 500}                                # a constant

On the command line the same specs are strings: ``--lr 1e-4..1e-2``, ``--hidden-dims 100,200,512x256``
(``x`` separates the layers of one FullyConnectedNet), ``--lr-decay grid:0.9,0.95``, ``--reg log:1e-3..1``,
``--lr-decay uniform:0.9..0.99``, ``--batch-size 500``. ``fcn sweep`` starts from ``--space`` (or
:data:`DEFAULT_SPACE`: learning rate, reg and hidden size) and each option replaces one parameter's spec;
:func:`run_sweep` takes the space as given. Parameters outside the space keep ``fcn train``'s defaults.
"""

from .cli import add_sweep_arguments, sweep_command
from .engines import RAY_MISSING_MESSAGE, MissingRayError
from .results import SweepResult, plot_sweep
from .run import run_sweep
from .space import (
    DEFAULT_SPACE,
    PARAMETERS,
    Dimension,
    SweepError,
    choice,
    grid,
    load_space,
    loguniform,
    parse_spec,
    resolve_space,
    sample_configs,
    uniform,
)
from .trial import TrialSettings, train_trial

__all__ = [
    "RAY_MISSING_MESSAGE",
    "PARAMETERS",
    "DEFAULT_SPACE",
    "Dimension",
    "SweepError",
    "MissingRayError",
    "TrialSettings",
    "SweepResult",
    "grid",
    "choice",
    "uniform",
    "loguniform",
    "parse_spec",
    "load_space",
    "resolve_space",
    "sample_configs",
    "train_trial",
    "run_sweep",
    "plot_sweep",
    "add_sweep_arguments",
    "sweep_command",
]
