"""The parts :class:`fcn.Solver` is built from, one job each:

- :mod:`~fcn.training.config`: :class:`TrainConfig`, every setting of a run, defined and checked once;
- :mod:`~fcn.training.optimizer`: the update rule, its hyperparameters and state arrays;
- :mod:`~fcn.training.schedules`: learning-rate schedules as pure functions of the step;
- :mod:`~fcn.training.step`: :class:`~fcn.training.step.TrainStep`, one gradient step (the unit a CUDA graph
  captures), with the batch order and the gather;
- :mod:`~fcn.training.cuda_graph`: the step replayed as a captured CUDA graph;
- :mod:`~fcn.training.augment`: random flips and crops, on the device;
- :mod:`~fcn.training.history`: histories, the best snapshot, early stopping, divergence;
- :mod:`~fcn.training.interrupts`: atomic sections with deferred Ctrl-C;
- :mod:`~fcn.training.checkpoint`: the checkpoint format, written and read back with every check first.
"""

from .config import TrainConfig

__all__ = ["TrainConfig"]
