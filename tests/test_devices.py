"""Devices given the way users write them (``0``, ``"cuda:0"``, ``"cpu"``, ``"device1"``), Backend equality and
hashing, 0-d host values, and the GPU probe that names a missing CUDA library.

CuPy itself is imitated by a small fake module where only the probing logic is under test, so these run (and
fail, when the logic is wrong) on machines without a GPU; the real thing is covered by the ``gpu`` tests.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import fcn
from fcn import backend as be


def _clear_gpu_caches():
    for name in ("has_cupy", "has_gpu", "gpu_problem"):
        getattr(getattr(be, name, None), "cache_clear", lambda: None)()


@pytest.fixture
def strict():
    return pytest.importorskip("array_api_strict")


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed (optional: one more Array-API namespace)")


# -- devices as users write them ---------------------------------------------------------------------------------


def test_strict_device_by_name_trains(strict, rng):
    """``device="device1"`` means array_api_strict.Device("device1"), as with a CuPy index or name."""
    net = fcn.FullyConnectedNet(12, [5], 3, seed=0, backend="array_api_strict", device="device1")
    assert net.backend.device == strict.Device("device1")
    X, y = rng.standard_normal((4, 12)), np.array([0, 1, 2, 0])
    loss, grads = net.loss(X, y)
    assert fcn.to_host(loss).shape == ()
    reference = fcn.FullyConnectedNet(12, [5], 3, seed=0).loss(X, y)[0]
    assert float(fcn.to_host(loss)) == pytest.approx(float(reference), rel=1e-12)


def test_torch_cpu_device_by_name_trains(torch, rng):
    net = fcn.FullyConnectedNet(12, [5], 3, seed=0, backend="torch", device="cpu")
    X, y = rng.standard_normal((8, 12)), np.arange(8) % 3
    solver = fcn.Solver(
        net,
        {"X_train": X, "y_train": y, "X_val": X, "y_val": y},
        batch_size=4,
        num_epochs=1,
        verbose=False,
        progress=False,
        optim_config={"learning_rate": 1e-2},
    )
    solver.train()
    assert len(solver.loss_history) == 2


def test_equal_devices_give_equal_hashable_backends(strict, torch):
    a = fcn.get_backend("array_api_strict", "device1")
    b = fcn.get_backend("array_api_strict", strict.Device("device1"))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert fcn.get_backend("array_api_strict", "device2") != a
    t1, t2 = fcn.get_backend("torch", "cpu"), fcn.get_backend("torch", torch.device("cpu"))
    assert t1 == t2 and hash(t1) == hash(t2)
    assert fcn.get_backend("numpy") == fcn.get_backend("numpy", "cpu")


def test_arrays_on_a_device_given_by_name_are_accepted(strict):
    target = fcn.get_backend("array_api_strict", "device1")
    on_device1 = strict.asarray([1.0, 2.0], device=strict.Device("device1"))
    assert fcn.to_backend(on_device1, target) is on_device1
    with pytest.raises(fcn.BackendError, match="expected data on device"):
        fcn.to_backend(strict.asarray([1.0]), target)


def test_unknown_devices_are_named(strict):
    with pytest.raises(fcn.BackendError, match="unknown device 'device7'.*device1"):
        fcn.get_backend("array_api_strict", "device7")
    with pytest.raises(fcn.BackendError, match="NumPy arrays live on the CPU"):
        fcn.get_backend("numpy", "cuda:0")


def test_backend_with_a_cupy_device_is_hashable():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    xp = pytest.importorskip("array_api_compat.cupy")
    a, b = fcn.Backend(xp, cupy.cuda.Device(0)), fcn.Backend(xp, cupy.cuda.Device(0))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1


class _FakeDevice:
    current = 0

    def __init__(self, index=None):
        self.id = _FakeDevice.current if index is None else index

    def __eq__(self, other):
        return isinstance(other, _FakeDevice) and other.id == self.id

    __hash__ = None  # like cupy.cuda.Device


def fake_cupy(*, count=1, nvrtc=None, cublas=None, runtime_version=12090):
    """A stand-in for the parts of CuPy that fcn's probes and device handling touch."""

    def fail_with(error):
        def call(*args):
            if error is not None:
                raise error
            return (12, 9)

        return call

    cupy = types.ModuleType("cupy")
    runtime = types.SimpleNamespace(getDeviceCount=lambda: count, runtimeGetVersion=lambda: runtime_version)
    cupy.cuda = types.SimpleNamespace(
        Device=_FakeDevice,
        runtime=runtime,
        nvrtc=types.SimpleNamespace(getVersion=fail_with(nvrtc)),
        device=types.SimpleNamespace(get_cublas_handle=fail_with(cublas)),
    )
    cupy.arange, cupy.ones, cupy.float32 = np.arange, np.ones, np.float32
    return cupy


@pytest.fixture
def with_fake_cupy(monkeypatch):
    def install(**kw):
        monkeypatch.setitem(sys.modules, "cupy", fake_cupy(**kw))
        _clear_gpu_caches()

    yield install
    _clear_gpu_caches()


def test_cupy_devices_by_index_and_name(with_fake_cupy):
    with_fake_cupy(count=2)
    assert be._cupy_device(1) == _FakeDevice(1)
    assert be._cupy_device("cuda:1") == _FakeDevice(1) == be._cupy_device("GPU:1")
    assert be._cupy_device("cuda") == _FakeDevice(0)
    with pytest.raises(fcn.BackendError, match="CUDA device 2 does not exist: this machine has 2 GPU"):
        be._cupy_device(2)
    with pytest.raises(fcn.BackendError, match="'cpu'"):
        be._cupy_device("cpu")


def test_gpu_probe_names_a_missing_nvrtc(with_fake_cupy):
    with_fake_cupy(nvrtc=RuntimeError("CuPy failed to load libnvrtc.so.12: cannot open shared object file"))
    assert not fcn.has_gpu()
    problem = be.gpu_problem()
    assert "NVRTC" in problem and "libnvrtc.so.12" in problem
    assert 'pip install "fcn-cifar[cuda12]"' in problem
    with pytest.raises(fcn.BackendError, match="NVRTC"):
        fcn.get_backend("cupy")


def test_gpu_probe_names_a_missing_cublas(with_fake_cupy):
    with_fake_cupy(cublas=OSError("libcublas.so.13: cannot open shared object file"), runtime_version=13000)
    assert not fcn.has_gpu()
    problem = be.gpu_problem()
    assert "cuBLAS" in problem and 'pip install "fcn-cifar[cuda13]"' in problem


def test_gpu_probe_without_devices(with_fake_cupy):
    with_fake_cupy(count=0)
    assert not fcn.has_gpu()
    assert "no CUDA GPU is visible" in be.gpu_problem()


def test_gpu_probe_when_everything_loads(with_fake_cupy):
    with_fake_cupy()
    assert fcn.has_gpu() and be.gpu_problem() is None


# -- host values of any rank ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [np.float64(2.5), 2.5, np.array(2.5)])
def test_zero_dimensional_host_values_keep_their_shape(backend, value):
    moved = fcn.to_backend(value, backend)
    assert tuple(moved.shape) == ()
    assert float(fcn.to_host(moved)) == 2.5


@pytest.mark.gpu
def test_cupy_device_by_index_and_name_on_a_gpu():
    if not fcn.has_gpu():
        pytest.skip(be.gpu_problem() or "no usable GPU")
    import cupy

    a, b = fcn.get_backend("cupy", 0), fcn.get_backend("cupy", "cuda:0")
    assert a == b and hash(a) == hash(b) and a.device == cupy.cuda.Device(0)
    net = fcn.FullyConnectedNet(12, [5], 3, seed=0, backend="cupy", device="cuda:0")
    X, y = np.random.default_rng(0).standard_normal((4, 12)), np.array([0, 1, 2, 0])
    solver = fcn.Solver(
        net,
        {"X_train": X, "y_train": y, "X_val": X, "y_val": y},
        batch_size=2,
        num_epochs=1,
        verbose=False,
        progress=False,
    )
    solver.train()
    assert len(solver.loss_history) == 2
