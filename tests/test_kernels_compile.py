"""The fused CUDA kernels compile with NVRTC for sm_80 (A100) and sm_90 (H100), with no GPU needed.

NVRTC is a library: ``cupy_backends.cuda.libs.nvrtc`` (from the ``cupy-cuda12x`` wheel, with the
``nvidia-cuda-nvrtc-cu12`` wheel providing the library) compiles CUDA source on a machine without a GPU or
driver, where ``cupy.cuda.compiler`` would ask the device for its architecture and fail. The tests compile
``fcn/ops/kernels/fused.cu`` with the options the CuPy backend uses (:data:`fcn.ops.cuda.COMPILE_OPTIONS`), to PTX
(whose ``.entry`` lines name the kernels) and to CUBIN (which runs ptxas: register and local-memory use), and
check that every kernel name the Python side launches (:data:`fcn.ops.cuda.KERNEL_NAMES`) is in the module and
no kernel in the module is unknown to it. Skipped, with the reason, where those wheels are absent:
``pip install -e ".[nvrtc]"``.
"""

from __future__ import annotations

import re

import pytest

fused = pytest.importorskip("fcn.ops.cuda", reason="fcn.ops.cuda does not import")

ARCHS = ("80", "90")


def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc
    except Exception as exc:  # ImportError, or the NVRTC library missing behind the module
        pytest.skip(f'NVRTC is not available ({exc}); pip install -e ".[nvrtc]"')
    try:
        nvrtc.getVersion()
    except Exception as exc:
        pytest.skip(f'the NVRTC library does not load ({exc}); pip install -e ".[nvrtc]"')
    return nvrtc


def compile_source(source: str, arch: str, *, real: bool) -> tuple[bytes, str]:
    """Compile ``source`` for ``compute_<arch>`` (PTX) or ``sm_<arch>`` (CUBIN, with ptxas's report).

    Returns ``(output, log)``; raises ``RuntimeError`` with NVRTC's log when compilation fails.
    """
    nvrtc = _nvrtc()
    target = f"sm_{arch}" if real else f"compute_{arch}"
    options = [*fused.COMPILE_OPTIONS, f"--gpu-architecture={target}"]
    if real:
        options.append("--ptxas-options=-v")
    prog = nvrtc.createProgram(source, "fused.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(prog, options)
        except nvrtc.NVRTCError as exc:
            log = nvrtc.getProgramLog(prog)
            raise RuntimeError(f"NVRTC failed for {target}: {exc}\n{_text(log)}") from None
        out = nvrtc.getCUBIN(prog) if real else nvrtc.getPTX(prog)
        return out, _text(nvrtc.getProgramLog(prog))
    finally:
        nvrtc.destroyProgram(prog)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def ptx_entries(ptx: bytes) -> set[str]:
    return set(re.findall(r"^\s*\.(?:visible\s+)?\.?entry\s+(\w+)", _text(ptx), flags=re.M))


@pytest.fixture(scope="module")
def source() -> str:
    return fused.kernel_source()


def test_kernel_names_are_unique_and_cover_both_dtypes():
    names = fused.KERNEL_NAMES
    assert len(names) == len(set(names))
    for suffix in ("_f32", "_f64"):
        # every dtype-specific kernel exists for float and double
        for kernel in ("bias_relu", "relu_backward", "sum_squares", "gather_augment"):
            assert f"fcn_{kernel}{suffix}" in names
        for rule in fused.RULE_KERNELS:
            assert f"fcn_update_{rule}{suffix}" in names


def test_unknown_kernel_name_is_refused():
    # the launch code goes through get_kernel, which only accepts names in KERNEL_NAMES (so the compile
    # check below covers every launch); no GPU is touched before that check
    with pytest.raises(KeyError, match="not a kernel"):
        fused.get_kernel("fcn_no_such_kernel_f32")


@pytest.mark.parametrize("arch", ARCHS)
def test_ptx_has_exactly_the_launched_kernels(source, arch):
    ptx, _ = compile_source(source, arch, real=False)
    entries = ptx_entries(ptx)
    assert entries, "no .entry in the PTX: the parser or the compilation is broken"
    missing = sorted(set(fused.KERNEL_NAMES) - entries)
    assert not missing, f"kernels launched from fcn/ops/cupy_ops.py but not in the compiled module: {missing}"
    unknown = sorted(entries - set(fused.KERNEL_NAMES))
    assert not unknown, f"kernels in fcn/ops/kernels/fused.cu that fcn/ops/cuda.py does not know: {unknown}"
    for dtype in ("f32", "f64"):  # float and double instantiations both compiled
        assert any(e.endswith(f"_{dtype}") for e in entries)


@pytest.mark.parametrize("arch", ARCHS)
def test_cubin_builds_without_local_memory(source, arch):
    cubin, log = compile_source(source, arch, real=True)
    assert len(cubin) > 1000
    compiled = set(re.findall(r"Compiling entry function '(\w+)'", log))
    assert compiled >= set(fused.KERNEL_NAMES), sorted(set(fused.KERNEL_NAMES) - compiled)
    # No kernel spills or keeps a stack frame: in particular the multi-tensor kernels read their by-value
    # tensor list in place (__grid_constant__) instead of copying 1.5 KB per thread to local memory.
    frames = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", log)
    assert frames
    assert all(f == ("0", "0", "0") for f in frames), log


def test_a_syntax_error_fails_the_compilation(source):
    broken = source.replace("const T v = hr[j] + b[j];", "const T v = hr[j] + b[j]", 1)
    assert broken != source
    with pytest.raises(RuntimeError, match="error"):
        compile_source(broken, "90", real=False)


def test_tensor_list_layout_matches_the_kernel_struct():
    # struct TensorList { i64 ptr[4][MT_MAX]; i64 size[MT_MAX]; i64 block_start[MT_MAX + 1]; i64 count; }
    np = pytest.importorskip("numpy")

    class FakeArray:
        def __init__(self, ptr, size):
            self.data = type("P", (), {"ptr": ptr})()
            self.size = size

    a = [FakeArray(1000, fused.CHUNK * 2 + 1), FakeArray(2000, 0), FakeArray(3000, 5)]
    g = [FakeArray(4000 + i, x.size) for i, x in enumerate(a)]
    packed, blocks = fused.tensor_list([a, g])
    words = packed.view(np.int64)
    m = fused.MT_MAX
    assert packed.shape == (1,) and packed.dtype.itemsize == (6 * m + 2) * 8
    assert blocks == 3 + 0 + 1
    assert list(words[:3]) == [1000, 2000, 3000] and list(words[m : m + 3]) == [4000, 4001, 4002]
    assert list(words[4 * m : 4 * m + 3]) == [fused.CHUNK * 2 + 1, 0, 5]
    assert list(words[5 * m : 5 * m + 4]) == [0, 3, 3, 4] and words[6 * m] == 4
    assert words[-1] == 3
    with pytest.raises(ValueError):
        fused.tensor_list([[a[0]] * (m + 1)])
