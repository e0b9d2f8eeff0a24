"""Atomic sections of training: Ctrl-C is held back until a step or an epoch end is complete.

A training step updates parameters, optimiser state and counters; an epoch end appends to the history,
snapshots the best parameters and writes a checkpoint. Interrupted half-way, either would leave a state that
no uninterrupted run ever had. :class:`AtomicSections` makes them units: inside :meth:`~AtomicSections.atomic`
a SIGINT only sets a flag, and :class:`KeyboardInterrupt` is raised when the outermost section ends (a second
Ctrl-C while one is pending interrupts at once). An exception that still escapes from inside a section marks
the state inconsistent (:attr:`~AtomicSections.consistent`): undoing a half-applied update would mean copying
every parameter at every step, so the state is refused for saving instead.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["AtomicSections"]


class AtomicSections:
    """Nested atomic sections with deferred Ctrl-C, and the flag saying whether the state is whole."""

    def __init__(self) -> None:
        #: False once an exception escaped from the middle of a section
        self.consistent = True
        self.depth = 0
        self.interrupt_pending = False

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """A block that changes the training state as a whole: an interrupt is held back until it ends."""
        self.depth += 1
        try:
            yield
        except BaseException:
            self.consistent = False
            raise
        finally:
            self.depth -= 1
        if self.depth == 0 and self.interrupt_pending:
            self.interrupt_pending = False
            raise KeyboardInterrupt

    @contextmanager
    def interrupts_deferred(self) -> Iterator[None]:
        """While training: Ctrl-C inside an atomic block is delivered when the block ends; a second one at once."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be installed from the main thread
            return
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum: int, frame: Any) -> None:
            if self.depth > 0 and not self.interrupt_pending:
                self.interrupt_pending = True
                return
            self.interrupt_pending = False
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                raise KeyboardInterrupt

        try:
            signal.signal(signal.SIGINT, on_sigint)
        except (ValueError, OSError):  # not allowed here (e.g. an embedded interpreter)
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
