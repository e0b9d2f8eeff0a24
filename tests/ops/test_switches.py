"""The one rule for ``FCN_*`` on/off variables, and the switches that follow it."""

import pytest

from fcn.ops.cuda import fused_requested
from fcn.ops.numpy_ops import blas_requested
from fcn.ops.switches import env_switch
from fcn.training.cuda_graph import cuda_graph_requested


@pytest.mark.parametrize(
    "value, default, expected",
    [(None, True, True), (None, False, False), ("", True, True), ("  ", False, False)]
    + [(v, False, True) for v in ("1", "true", "YES", " On ")]
    + [(v, True, False) for v in ("0", "False", " no ", "OFF")],
)
def test_switch_reads_on_and_off_words_and_defaults_when_unset(monkeypatch, value, default, expected):
    if value is None:
        monkeypatch.delenv("FCN_TEST_SWITCH", raising=False)
    else:
        monkeypatch.setenv("FCN_TEST_SWITCH", value)
    assert env_switch("FCN_TEST_SWITCH", default) is expected
    assert env_switch("FCN_TEST_SWITCH", default, explicit=not expected) is (not expected)  # explicit wins


@pytest.mark.parametrize("value", ["2", "maybe", "of", "y"])
def test_switch_refuses_other_values_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("FCN_TEST_SWITCH", value)
    with pytest.raises(ValueError, match=rf"^FCN_TEST_SWITCH='{value}': expected 1/true/yes/on or 0/false/no/off$"):
        env_switch("FCN_TEST_SWITCH", True)
    assert env_switch("FCN_TEST_SWITCH", True, explicit=False) is False  # an explicit choice never reads it


@pytest.mark.parametrize(
    "read, name, default",
    [(blas_requested, "FCN_BLAS", True), (fused_requested, "FCN_FUSED_KERNELS", False)]
    + [(cuda_graph_requested, "FCN_CUDA_GRAPH", False)],
)
def test_each_switch_reads_its_variable_by_the_rule(monkeypatch, read, name, default):
    monkeypatch.delenv(name, raising=False)
    assert read() is default
    monkeypatch.setenv(name, "off" if default else "on")
    assert read() is (not default) and read(default) is default
    monkeypatch.setenv(name, "2")
    with pytest.raises(ValueError, match=f"^{name}="):
        read()
