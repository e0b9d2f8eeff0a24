"""Backend resolution, namespace inference, host <-> device moves and their errors."""

import numpy as np
import pytest

import fcn
from fcn import backend as be


def test_numpy_is_the_default():
    assert fcn.get_backend().name == "numpy"
    assert fcn.get_backend(np).name == "numpy"
    assert fcn.get_backend("NumPy").is_numpy


def test_unknown_backend_names_the_choices():
    with pytest.raises(fcn.BackendError, match="unknown backend 'jax'.*numpy, cupy, array_api_strict, torch"):
        fcn.get_backend("jax")


def test_cupy_missing_says_which_extra(monkeypatch):
    monkeypatch.setattr(be, "has_cupy", lambda: False)
    with pytest.raises(fcn.BackendError, match=r"pip install \"fcn-cifar\[cuda12\]\""):
        fcn.get_backend("cupy")


def test_cupy_without_gpu_says_so(monkeypatch):
    monkeypatch.setattr(be, "has_cupy", lambda: True)
    monkeypatch.setattr(be, "has_gpu", lambda: False)
    with pytest.raises(fcn.BackendError, match="no CUDA GPU"):
        fcn.get_backend("cupy")


def test_model_with_unavailable_cupy_fails_clearly(monkeypatch):
    monkeypatch.setattr(be, "has_cupy", lambda: False)
    with pytest.raises(fcn.BackendError, match="CuPy is not installed"):
        fcn.FullyConnectedNet(10, [5], 3, backend="cupy")


def test_round_trip_keeps_values(backend, rng):
    a = rng.standard_normal((3, 4))
    d = backend.asarray(a)
    assert fcn.namespace_of(d).name == backend.name
    np.testing.assert_array_equal(fcn.to_host(d), a)


def test_dtype_by_name(backend):
    d = fcn.to_backend(np.arange(3), backend, dtype="float32")
    assert d.dtype == backend.xp.float32


def test_mixed_libraries_are_refused():
    strict = pytest.importorskip("array_api_strict")
    a = strict.asarray([1.0, 2.0], device=strict.Device("device1"))
    with pytest.raises(fcn.BackendError, match="different"):
        fcn.namespace_of(np.zeros(2), a)
    with pytest.raises(fcn.BackendError, match="different devices"):
        fcn.namespace_of(strict.asarray([1.0, 2.0]), a)


def test_device_array_is_not_moved_silently():
    strict = pytest.importorskip("array_api_strict")
    on_default = strict.asarray([1.0, 2.0])
    target = fcn.get_backend("array_api_strict", strict.Device("device1"))
    with pytest.raises(fcn.BackendError, match="expected data on device"):
        target.asarray(on_default)
    with pytest.raises(fcn.BackendError, match="expected data on the numpy backend"):
        fcn.to_backend(on_default, "numpy")


def test_strict_device_refuses_implicit_host_conversion():
    """The property the CPU suite relies on to stand in for a GPU."""
    strict = pytest.importorskip("array_api_strict")
    a = strict.asarray([1.0], device=strict.Device("device1"))
    with pytest.raises(RuntimeError):
        np.asarray(a)


@pytest.mark.gpu
def test_gpu_is_visible_when_marked():
    if not fcn.has_gpu():
        pytest.skip("no CUDA GPU here")
    assert fcn.get_backend("cupy").is_cupy
