"""Backends (fcn/backend.py): resolution by name, module or device as users write them (``0``, ``"cuda:0"``,
``"cpu"``, ``"device1"``), equality and hashing, namespace inference, host <-> device moves, dtypes, the GPU probe
that names a missing CUDA library, and errors that name both sides.

CuPy itself is imitated by a small fake module where only the probing logic is under test, so these run (and
fail, when the logic is wrong) on machines without a GPU; the real thing is covered by the ``gpu`` tests.
"""

import importlib
import sys
import types

import numpy as np
import pytest

import fcn
from fcn import backend as be
from fcn.backend import normalize_device, resolve_dtype, to_backend, to_host


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


# -- names, modules, descriptions -----------------------------------------------------------------------------------


def test_get_backend_names_and_modules():
    assert fcn.get_backend(" Cpu ").is_numpy
    assert fcn.get_backend("np").name == "numpy"
    assert fcn.get_backend("array-api-strict").name == "array_api_strict"
    import types

    with pytest.raises(fcn.BackendError, match="not an Array API namespace"):
        fcn.get_backend(types.ModuleType("plain_module"))
    with pytest.raises(fcn.BackendError, match="not int"):
        fcn.get_backend(3)


def test_get_backend_keeps_or_replaces_the_device():
    strict = pytest.importorskip("array_api_strict")
    base = fcn.get_backend("array_api_strict")
    assert fcn.get_backend(base) is base
    moved = fcn.get_backend(base, strict.Device("device1"))
    assert moved.device == strict.Device("device1") and moved.xp is base.xp
    assert fcn.get_backend(strict, strict.Device("device1")).device == strict.Device("device1")


@pytest.mark.parametrize("fused", [True, False])
def test_a_new_device_keeps_the_backends_choice_of_kernels(fused):
    """``get_backend(backend, device)`` moves the backend to the device, its ``fused`` choice goes along."""
    chosen = fcn.get_backend("numpy", fused=fused)
    assert fcn.get_backend(chosen, "cpu").fused is fused


def test_fused_kernels_for_a_namespace_without_them_are_refused_by_name():
    pytest.importorskip("array_api_strict")
    with pytest.raises(
        fcn.BackendError,
        match=r"^fused=True needs the CuPy or NumPy backend; there are no fused kernels for array_api_strict$",
    ):
        fcn.get_backend("array_api_strict", fused=True)


def test_backend_repr_and_names():
    strict = pytest.importorskip("array_api_strict")
    assert repr(fcn.get_backend()) == "Backend(numpy)"
    dev1 = fcn.get_backend("array_api_strict", strict.Device("device1"))
    assert repr(dev1) == "Backend(array_api_strict, device=array_api_strict.Device('device1'))"
    assert dev1.name == "array_api_strict" and not dev1.is_numpy and not dev1.is_cupy
    assert fcn.get_backend().is_numpy and not fcn.get_backend().is_cupy


def test_another_array_api_library_by_name_and_by_module():
    torch = pytest.importorskip("torch")
    for spec in ("torch", torch):
        be = fcn.get_backend(spec)
        assert be.name == "torch" and repr(be) == "Backend(torch)"
        assert not be.is_numpy and not be.is_cupy
    # a device given by name is normalised to the library's own device object
    assert fcn.get_backend(torch, "cpu").device == torch.device("cpu")


@pytest.mark.parametrize("marker", ["__array_namespace_info__", "__array_api_version__"])
def test_a_module_with_either_array_api_marker_is_a_namespace(marker):
    import types

    module = types.ModuleType("my_array_library")
    setattr(module, marker, "2024.12")
    be = fcn.get_backend(module, "dev0")
    assert be.xp is module and be.device == "dev0" and be.name == "my_array_library"


def test_namespace_modules_map_to_their_backends():
    import array_api_compat.numpy as compat_numpy

    strict = pytest.importorskip("array_api_strict")
    assert fcn.get_backend(np).is_numpy and fcn.get_backend(compat_numpy).is_numpy
    assert fcn.get_backend(strict).xp is strict


def test_the_numpy_module_gives_the_numpy_backend_with_its_device():
    by_name = fcn.get_backend("numpy")
    by_module = fcn.get_backend(np, "cpu")
    assert by_module.xp is by_name.xp and by_module.device == "cpu"
    assert fcn.get_backend(np).device is None


@pytest.mark.parametrize("device", ["cpu", "CPU", "Cpu"])
def test_the_numpy_device_is_cpu_in_any_case(device):
    assert fcn.get_backend("numpy", device).device == "cpu"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("torch", r"^PyTorch is not installed \(fcn never needs it; it is one more namespace\)$"),
        (
            "array_api_strict",
            r'^array_api_strict is not installed: pip install "fcn-cifar\[dev\]" or pip install array-api-strict$',
        ),
    ],
    ids=["second-library", "reference-library"],  # ids without "torch": mutation runs deselect those
)
def test_an_optional_namespace_that_is_missing_is_named(monkeypatch, name, message):
    import importlib

    from fcn import backend as be

    real = importlib.import_module

    def without(module, *args):
        if module == name:
            raise ImportError(f"No module named {module!r}")
        return real(module, *args)

    monkeypatch.setattr(be.importlib, "import_module", without)
    with pytest.raises(fcn.BackendError, match=message):
        fcn.get_backend(name)


# -- CuPy and the GPU probe -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cupy", "cp", "gpu", "cuda", " CUDA "])
def test_every_cupy_alias_needs_a_gpu(monkeypatch, name):
    from fcn import backend as be

    monkeypatch.setattr(be, "has_cupy", lambda: True)
    monkeypatch.setattr(be, "has_gpu", lambda: False)
    with pytest.raises(fcn.BackendError, match="no CUDA GPU is visible"):
        fcn.get_backend(name)
    monkeypatch.setattr(be, "has_cupy", lambda: False)
    with pytest.raises(fcn.BackendError, match=r"CuPy is not installed.*cuda12.*cuda13"):
        fcn.get_backend(name)


@pytest.mark.parametrize("probe", ["this-machine", "nothing", "cupy-missing"])
def test_without_a_gpu_the_message_says_what_to_do(monkeypatch, probe):
    """With has_cupy/has_gpu replaced (as tests and embedding code do), the probe may have nothing to add: the
    message still says what to do; where it has something (this machine's probe), that is the middle part."""
    monkeypatch.setattr(be, "has_cupy", lambda: True)
    monkeypatch.setattr(be, "has_gpu", lambda: False)
    if probe == "nothing":
        monkeypatch.setattr(be, "gpu_problem", lambda: None)
    elif probe == "cupy-missing":
        monkeypatch.setitem(sys.modules, "cupy", None)  # the probe's import of CuPy fails ...
        monkeypatch.setattr(be, "gpu_problem", be.gpu_problem.__wrapped__)  # ... in a probe not cached before
    middle = r"\b.*" if probe == "this-machine" else r"\. "
    with pytest.raises(
        fcn.BackendError,
        match=r"^CuPy is installed but no CUDA GPU is visible" + middle + r"Check the NVIDIA driver and "
        r"CUDA_VISIBLE_DEVICES, or use backend=\"numpy\"\.$",
    ):
        fcn.get_backend("cupy")


def test_with_a_usable_gpu_the_cupy_name_gives_the_array_api_namespace_of_cupy(monkeypatch):
    """Choosing the namespace touches no device, so this runs wherever CuPy imports."""
    pytest.importorskip("cupy", reason="CuPy is not installed")
    monkeypatch.setattr(be, "has_cupy", lambda: True)
    monkeypatch.setattr(be, "has_gpu", lambda: True)
    backend = fcn.get_backend("cupy")
    assert backend.xp is importlib.import_module("array_api_compat.cupy")
    assert backend.is_cupy and backend.name == "cupy" and backend.device is None


def test_the_cupy_module_needs_a_gpu_like_the_name(monkeypatch):
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    from fcn import backend as be

    monkeypatch.setattr(be, "has_gpu", lambda: False)
    with pytest.raises(fcn.BackendError, match="no CUDA GPU is visible"):
        fcn.get_backend(cupy)
    import array_api_compat.cupy as compat_cupy

    with pytest.raises(fcn.BackendError, match="no CUDA GPU is visible"):
        fcn.get_backend(compat_cupy)


def test_synchronize_is_a_no_op_on_the_cpu(backend):
    if backend.is_cupy:
        pytest.skip("the GPU case synchronizes for real")
    assert backend.synchronize() is None


def _clear_gpu_caches():
    for name in ("has_cupy", "has_gpu", "gpu_problem"):
        getattr(getattr(be, name, None), "cache_clear", lambda: None)()


class _FakeDevice:
    current = 0

    def __init__(self, index=None):
        self.id = _FakeDevice.current if index is None else index

    def __eq__(self, other):
        return isinstance(other, _FakeDevice) and other.id == self.id

    __hash__ = None  # like cupy.cuda.Device


class _FakeTorchDevice:
    """``torch.device`` for "cpu", "cuda" and "cuda:N" (and its error for other names)."""

    def __init__(self, kind, index=None):
        if isinstance(kind, _FakeTorchDevice):
            kind, index = kind.type, kind.index
        kind, _, number = str(kind).partition(":")
        if kind not in ("cpu", "cuda"):
            raise RuntimeError(f"Expected one of cpu, cuda device type at start of device string: {kind}")
        self.type, self.index = kind, int(number) if number else index

    def __eq__(self, other):
        return isinstance(other, _FakeTorchDevice) and (other.type, other.index) == (self.type, self.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __repr__(self):
        return f"device(type={self.type!r}" + ("" if self.index is None else f", index={self.index}") + ")"


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
        cupy = fake_cupy(**kw)
        monkeypatch.setitem(sys.modules, "cupy", cupy)
        _clear_gpu_caches()
        return cupy

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


def test_a_cuda_device_of_another_library_names_the_same_gpu(with_fake_cupy, monkeypatch):
    """A ``torch.device("cuda", 0)`` means GPU 0 to CuPy too; a bare ``"cuda"`` device means the current GPU."""
    cupy = with_fake_cupy(count=2)
    monkeypatch.setattr(_FakeDevice, "current", 1)
    assert normalize_device(cupy, _FakeTorchDevice("cuda", 0)) == _FakeDevice(0)
    assert normalize_device(cupy, _FakeTorchDevice("cuda")) == _FakeDevice(1)
    with pytest.raises(fcn.BackendError, match=r"device must be an index or 'cuda:N'"):
        normalize_device(cupy, _FakeTorchDevice("cpu"))


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


def test_backend_with_a_cupy_device_is_hashable():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    xp = pytest.importorskip("array_api_compat.cupy")
    a, b = fcn.Backend(xp, cupy.cuda.Device(0)), fcn.Backend(xp, cupy.cuda.Device(0))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1


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


# -- devices as users write them (``0``, ``"cuda:0"``, ``"cpu"``, ``"device1"``), equality and hashing --------------


@pytest.fixture
def strict():
    return pytest.importorskip("array_api_strict")


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed (optional: one more Array-API namespace)")


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


def test_equal_devices_give_equal_hashable_backends(strict):
    a = fcn.get_backend("array_api_strict", "device1")
    b = fcn.get_backend("array_api_strict", strict.Device("device1"))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert fcn.get_backend("numpy") == fcn.get_backend("numpy", "cpu")


@pytest.mark.parametrize("other", ["device2", "CPU_DEVICE", None])
def test_backends_on_different_devices_differ(strict, other):
    """One namespace on two devices: two backends, also as dictionary keys (caches per device rely on it)."""
    a, b = fcn.get_backend("array_api_strict", "device1"), fcn.get_backend("array_api_strict", other)
    assert a != b and not a == b and len({a, b}) == 2
    assert a != fcn.get_backend("numpy")


def test_equal_torch_devices_give_equal_hashable_backends(torch):
    t1, t2 = fcn.get_backend("torch", "cpu"), fcn.get_backend("torch", torch.device("cpu"))
    assert t1 == t2 and hash(t1) == hash(t2)


@pytest.fixture(params=["stand-in", "torch"])
def tensor_library(request, monkeypatch):
    """PyTorch's namespace and module, with CUDA reported present and GPU 1 current.

    The real library, and a stand-in for the runs that leave PyTorch out (its ``torch.device`` parses the few
    device strings these tests use, as PyTorch does).
    """
    if request.param == "torch":
        torch = pytest.importorskip("torch", reason="PyTorch is not installed")
        xp = importlib.import_module("array_api_compat.torch")
    else:
        torch = xp = types.ModuleType("torch")
        torch.device = _FakeTorchDevice
        torch.cuda = types.SimpleNamespace(is_available=None, current_device=None)
        monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    return xp, torch


def test_a_bare_cuda_device_means_the_current_gpu(tensor_library):
    """PyTorch's arrays report their GPU's index, so ``"cuda"`` is resolved to the current GPU: a backend made with
    ``"cuda"`` then equals one made with that index."""
    xp, torch = tensor_library
    bare = fcn.Backend(xp, "cuda")
    assert bare.device == torch.device("cuda", 1)
    assert bare == fcn.Backend(xp, "cuda:1") and hash(bare) == hash(fcn.Backend(xp, "cuda:1"))
    assert bare != fcn.Backend(xp, "cuda:0")


def test_without_cuda_a_bare_cuda_device_is_kept_as_given(tensor_library, monkeypatch):
    xp, torch = tensor_library
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: pytest.fail("no GPU to ask"))
    assert normalize_device(xp, "cuda") == torch.device("cuda")


def test_a_device_the_tensor_library_does_not_know_is_named(tensor_library):
    xp, _ = tensor_library
    with pytest.raises(fcn.BackendError, match=r"^not a PyTorch device: 'tpu' \(.*device string: tpu\)$"):
        fcn.Backend(xp, "tpu")


def array_library(devices):
    """A made-up Array API namespace that lists ``devices``."""
    lib = types.ModuleType("my_array_library")
    lib.__array_api_version__ = "2024.12"
    lib.__array_namespace_info__ = lambda: types.SimpleNamespace(devices=lambda: list(devices))
    return lib


class _NamedDevice:
    """A device whose text forms all differ, as in JAX (str "TFRT_CPU_0", repr "CpuDevice(id=0)")."""

    def __init__(self, index):
        self.index, self.name = index, f"unit{index}"

    def __str__(self):
        return f"DEV_{self.index}"

    def __repr__(self):
        return f"NamedDevice(id={self.index})"


@pytest.mark.parametrize("text", [str, repr, lambda d: d.name], ids=["str", "repr", "name"])
def test_a_device_is_found_by_any_of_its_names(text):
    devices = [_NamedDevice(0), _NamedDevice(1)]
    lib = array_library(devices)
    assert normalize_device(lib, text(devices[1])) is devices[1]
    assert fcn.get_backend(lib, text(devices[1])).device is devices[1]


class _UnhashableDevice:
    """A device object that cannot be hashed (as a CuPy ``Device``), equal by its index."""

    __hash__ = None

    def __init__(self, index):
        self.index = index

    def __eq__(self, other):
        return isinstance(other, _UnhashableDevice) and other.index == self.index

    def __repr__(self):
        return f"UnhashableDevice({self.index})"


def test_backends_on_unhashable_devices_still_hash_and_differ_per_device():
    lib = array_library([])
    a, same, other = (fcn.Backend(lib, _UnhashableDevice(i)) for i in (0, 0, 1))
    assert a == same and hash(a) == hash(same)
    assert a != other and len({a, same, other}) == 2


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


# -- dtypes and moves between host and device -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["float32", "float64", "int64", "int32"])
def test_to_backend_with_dtype_names_from_host(backend, name):
    d = to_backend(np.asarray([[1.0, 2.0], [3.0, 4.0]]), backend, dtype=name)
    assert d.dtype == getattr(backend.xp, name)
    np.testing.assert_array_equal(to_host(d), np.asarray([[1, 2], [3, 4]], dtype=name))


@pytest.mark.parametrize("dtype", ["float32", np.float32, np.dtype("float32")])
def test_to_backend_casts_arrays_already_on_the_backend(backend, dtype):
    here = backend.asarray(np.asarray([1.5, 2.5]))
    assert here.dtype == backend.xp.float64
    d = to_backend(here, backend, dtype=dtype)
    assert d.dtype == backend.xp.float32
    np.testing.assert_array_equal(to_host(d), np.asarray([1.5, 2.5], dtype=np.float32))


def test_to_backend_without_dtype_keeps_the_dtype(backend):
    for host in (np.asarray([1, 2], dtype=np.int32), np.asarray([1.0], dtype=np.float32)):
        d = to_backend(host, backend)
        assert d.dtype == getattr(backend.xp, host.dtype.name)
        assert to_host(to_backend(d, backend)).dtype == host.dtype


def test_to_backend_places_host_data_on_the_backends_device():
    strict = pytest.importorskip("array_api_strict")
    dev = strict.Device("device1")
    d = to_backend(np.ones(2), fcn.get_backend("array_api_strict", dev))
    assert d.device == dev
    d32 = to_backend(np.ones(2), fcn.get_backend("array_api_strict", dev), dtype="float32")
    assert d32.device == dev and d32.dtype == strict.float32


def test_backend_asarray_passes_the_dtype_on(backend):
    d = backend.asarray(np.asarray([1.0, 2.0]), dtype="float32")
    assert d.dtype == backend.xp.float32
    d2 = backend.asarray(np.asarray([1, 2]), dtype=np.float64)
    assert d2.dtype == backend.xp.float64


def test_resolve_dtype_accepts_names_numpy_dtypes_and_the_namespaces_own(backend):
    xp = backend.xp
    assert resolve_dtype(xp, "float32") == xp.float32
    assert resolve_dtype(xp, np.float64) == xp.float64
    assert resolve_dtype(xp, np.dtype("int64")) == xp.int64
    assert resolve_dtype(xp, xp.float32) == xp.float32


@pytest.mark.parametrize("bad", ["float128x", "not_a_dtype"])
def test_resolve_dtype_names_the_bad_dtype_and_the_namespace(bad):
    strict = pytest.importorskip("array_api_strict")
    with pytest.raises(ValueError, match=f"dtype '{bad}' is not available in array_api_strict"):
        resolve_dtype(strict, bad)
    with pytest.raises(ValueError, match=f"dtype '{bad}' is not available"):
        fcn.to_backend(np.ones(2), "numpy", dtype=bad)


def test_dtype_name_of_every_namespaces_dtypes():
    from fcn.backend import dtype_name

    assert dtype_name(np.float32) == "float32"
    assert dtype_name(np.dtype("float64")) == "float64"
    assert dtype_name(fcn.get_backend().xp.float32) == "float32"
    strict = pytest.importorskip("array_api_strict")
    assert dtype_name(strict.float32) == "float32" and dtype_name(strict.int64) == "int64"
    torch = pytest.importorskip("torch")
    assert dtype_name(torch.float64) == "float64"


@pytest.mark.parametrize("value", [np.float64(2.5), 2.5, np.array(2.5)])
def test_zero_dimensional_host_values_keep_their_shape(backend, value):
    moved = fcn.to_backend(value, backend)
    assert tuple(moved.shape) == ()
    assert float(fcn.to_host(moved)) == 2.5


def test_to_host_returns_numpy_for_every_backend(backend):
    host = np.asarray([[1.0, 2.0]])
    back = to_host(backend.asarray(host))
    assert type(back) is np.ndarray
    np.testing.assert_array_equal(back, host)
    assert type(to_host([1, 2])) is np.ndarray and type(to_host(3.0)) is np.ndarray


def test_to_host_of_a_tensor_that_requires_grad():
    torch = pytest.importorskip("torch")
    t = torch.ones(2, requires_grad=True)
    np.testing.assert_array_equal(to_host(t), [1.0, 1.0])


def test_to_host_falls_back_when_numpy_cannot_read_the_array_directly(monkeypatch):
    """A namespace whose arrays NumPy cannot take over by DLPack is read through its own host device."""
    strict = pytest.importorskip("array_api_strict")
    a = strict.asarray([[1.0, 2.0], [3.0, 4.0]], device=strict.Device("device1"))

    def refuse(x):
        raise BufferError("not readable here")

    monkeypatch.setattr(np, "from_dlpack", refuse)
    back = to_host(a)
    assert type(back) is np.ndarray
    np.testing.assert_array_equal(back, [[1.0, 2.0], [3.0, 4.0]])


# -- arrays of another library or device are refused, naming both sides ---------------------------------------------


def test_device_mismatch_is_an_error_naming_both_sides():
    strict = pytest.importorskip("array_api_strict")
    dev1 = fcn.get_backend("array_api_strict", strict.Device("device1"))
    on_default = strict.asarray([1.0, 2.0])
    with pytest.raises(fcn.BackendError, match="expected data on device .*device1.*got a array_api_strict array"):
        to_backend(on_default, dev1)
    with pytest.raises(fcn.BackendError, match="expected data on device"):
        to_backend(on_default, dev1, dtype="float32")
    # the same device is accepted as is, and a backend with no device takes any device of its namespace
    here = strict.asarray([1.0, 2.0], device=strict.Device("device1"))
    assert to_backend(here, dev1) is here
    assert to_backend(here, fcn.get_backend("array_api_strict")) is here


def test_an_array_of_another_library_is_an_error():
    torch = pytest.importorskip("torch")
    with pytest.raises(fcn.BackendError, match="expected data on the numpy backend"):
        to_backend(torch.ones(2), "numpy")


def test_mixed_library_and_device_errors_describe_each_array():
    strict = pytest.importorskip("array_api_strict")
    on_dev1 = strict.asarray([1.0, 2.0], device=strict.Device("device1"))
    with pytest.raises(
        fcn.BackendError,
        match=r"^arrays from different libraries were mixed: array_api_strict array on "
        r"array_api_strict.Device\('device1'\), numpy array on 'cpu'\. Move them to one backend first",
    ):
        fcn.namespace_of(np.zeros(2), on_dev1)
    with pytest.raises(
        fcn.BackendError,
        match=r"^arrays on different devices were mixed: array_api_strict.Device\('CPU_DEVICE'\), "
        r"array_api_strict.Device\('device1'\)$",
    ):
        fcn.namespace_of(strict.asarray([1.0]), on_dev1)
    with pytest.raises(
        fcn.BackendError,
        match=r"^expected data on the numpy backend or in host memory, got a array_api_strict array on "
        r"array_api_strict.Device\('device1'\)$",
    ):
        to_backend(on_dev1, "numpy")


def test_namespace_of_ignores_none_and_python_scalars(backend):
    a = backend.asarray(np.ones(2))
    assert fcn.namespace_of(None, a, 1.0, 2).name == backend.name
    with pytest.raises(fcn.BackendError, match="at least one array"):
        fcn.namespace_of(None, 3)


def test_python_scalars_and_bools_do_not_decide_the_namespace():
    assert fcn.namespace_of(np.zeros(2), True, 3, 2.5).is_numpy


def test_namespace_of_messages_in_full():
    with pytest.raises(fcn.BackendError, match=r"^namespace_of\(\) needs at least one array$"):
        fcn.namespace_of(None)
    with pytest.raises(
        fcn.BackendError,
        match=r"^arrays from different libraries were mixed: numpy array on 'cpu', str\. "
        r"Move them to one backend first \(fcn\.to_host / Backend\.asarray\)\.$",
    ):
        fcn.namespace_of(np.zeros(2), "abc")
