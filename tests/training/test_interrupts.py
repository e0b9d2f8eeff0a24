"""fcn.training.interrupts: a Ctrl-C inside an atomic section waits for the section's end; an escape spoils the state.

The Solver's resume tests (tests/training/test_resume.py) show the effect on a whole run; these pin the rules
of :class:`AtomicSections` itself, with real SIGINTs sent to this process.
"""

from __future__ import annotations

import signal
import threading

import pytest

from fcn.training.interrupts import AtomicSections


@pytest.fixture(autouse=True)
def python_default_handler():
    """Python's own SIGINT handler (KeyboardInterrupt) as the one before fcn's, whatever the test runner installed."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def ctrl_c() -> None:
    # raise_signal delivers to this thread at once; os.kill may reach another thread of the process first
    # (a test runner's progress spinner), and the handler would then run some statements later
    signal.raise_signal(signal.SIGINT)


def test_fresh_sections_are_whole_and_closed_with_nothing_pending():
    sections = AtomicSections()
    assert sections.consistent is True
    assert sections.depth == 0
    assert sections.interrupt_pending is False


def test_an_exception_escaping_a_section_marks_the_state_inconsistent():
    sections = AtomicSections()
    with pytest.raises(ZeroDivisionError), sections.atomic():
        _ = 1 / 0
    assert sections.consistent is False and sections.depth == 0


def test_a_section_that_ends_normally_keeps_the_state_consistent():
    sections = AtomicSections()
    with sections.atomic(), sections.atomic():
        assert sections.depth == 2
    assert sections.consistent is True and sections.depth == 0


def test_a_ctrl_c_inside_a_section_is_raised_when_the_outermost_section_ends():
    sections = AtomicSections()
    done = []
    with sections.interrupts_deferred():
        with pytest.raises(KeyboardInterrupt), sections.atomic():
            with sections.atomic():
                ctrl_c()
                done.append("inner")
            assert sections.interrupt_pending  # held back: the outer section is still open
            done.append("outer")
    assert done == ["inner", "outer"]
    assert sections.interrupt_pending is False and sections.consistent is True


def test_a_second_ctrl_c_while_one_is_pending_interrupts_at_once():
    sections = AtomicSections()
    reached = []
    with sections.interrupts_deferred():
        with pytest.raises(KeyboardInterrupt), sections.atomic():
            ctrl_c()
            reached.append("after the first")
            ctrl_c()
            reached.append("after the second")
    assert reached == ["after the first"]
    assert sections.interrupt_pending is False and sections.consistent is False


def test_a_ctrl_c_outside_any_section_interrupts_at_once():
    sections = AtomicSections()
    with pytest.raises(KeyboardInterrupt), sections.interrupts_deferred():
        ctrl_c()
        pytest.fail("the interrupt was held back outside an atomic section")


def test_the_previous_handler_is_called_outside_a_section_and_restored_afterwards():
    calls = []

    def previous(signum, frame):
        calls.append(signum)

    old = signal.signal(signal.SIGINT, previous)
    try:
        sections = AtomicSections()
        with sections.interrupts_deferred():
            assert signal.getsignal(signal.SIGINT) is not previous
            ctrl_c()
        assert calls == [signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is previous
    finally:
        signal.signal(signal.SIGINT, old)


def test_an_ignored_ctrl_c_stays_ignored_outside_a_section():
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with AtomicSections().interrupts_deferred():
            ctrl_c()  # must not raise: the caller asked for Ctrl-C to be ignored
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)


def test_outside_the_main_thread_no_handler_is_installed():
    seen = []

    def train():
        with AtomicSections().interrupts_deferred():
            seen.append(signal.getsignal(signal.SIGINT))

    before = signal.getsignal(signal.SIGINT)
    worker = threading.Thread(target=train)
    worker.start()
    worker.join()
    assert seen == [before]
