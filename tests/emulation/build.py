"""Compile ``fcn/ops/kernels/fused.cu`` with g++ as host code (``cuda_emu.h``) and load it with ctypes.

The CUDA source is compiled unchanged, except that kernels named in :data:`NOT_EMULATED` are cut out by name
(``fcn_hold_stream`` spins on host memory with inline PTX). One launcher per kernel is generated from the
``extern "C" __global__`` signatures (read from the preprocessed source, so the macro-made kernels are seen):
it takes the grid, the block and an array of pointers to each argument's bytes, exactly what
``cuLaunchKernel`` receives, and copies each parameter at its declared size. Builds are cached in the
temporary directory under a hash of everything that goes into them.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy

HERE = Path(__file__).resolve().parent
HEADER = HERE / "cuda_emu.h"
#: kernels left out of the emulation, by name
NOT_EMULATED = ("fcn_hold_stream",)
#: g++ flags of each variant; no FMA contraction, so float arithmetic is the reference's, operation by operation
FLAGS = {
    "plain": ["-O1"],  # the time goes into thread switches, not arithmetic: -O2 would only compile longer
    # -g1: line numbers in the reports, at half the compile time of -g
    "asan": ["-O1", "-g1", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"],
    "tsan": ["-O1", "-g1", "-fsanitize=thread"],
}
COMMON = ["-std=c++20", "-ffp-contract=off", "-fPIC", "-shared", "-pthread", "-w"]
_SIGNATURE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)


def gxx() -> str | None:
    """The g++ to use (``$CXX`` if set), or None where there is none."""
    return shutil.which(os.environ.get("CXX", "g++"))


@dataclass(frozen=True)
class Param:
    """One kernel parameter: its C type (as written), its name, its size in bytes (from the compiler)."""

    ctype: str
    name: str
    size: int


def defines(options: tuple[str, ...]) -> list[str]:
    """The ``-D`` options among NVRTC's options (the rest, such as ``--std``, do not apply to g++)."""
    return [o for o in options if o.startswith("-D")]


def strip_kernels(source: str, names: tuple[str, ...] = NOT_EMULATED) -> str:
    """``source`` without the kernels ``names`` (their whole definition, found by brace matching)."""
    for name in names:
        match = re.search(r'extern\s+"C"\s+__global__\s+void\s+' + name + r"\s*\(", source)
        if match is None:
            continue  # a source without it (a test's own kernel)
        depth, i = 0, source.index("{", match.end())
        for j in range(i, len(source)):
            depth += {"{": 1, "}": -1}.get(source[j], 0)
            if depth == 0:
                source = source[: match.start()] + f"// {name}: not emulated\n" + source[j + 1 :]
                break
    return source


def signatures(source: str, options: tuple[str, ...]) -> dict[str, list[tuple[str, str]]]:
    """Each kernel's parameters ``(type, name)``, from the source after the preprocessor (macros expanded)."""
    cmd = [gxx() or "g++", "-E", "-P", "-x", "c++", *defines(options), "-"]
    text = subprocess.run(cmd, input=source, capture_output=True, text=True, check=True).stdout
    kernels: dict[str, list[tuple[str, str]]] = {}
    for name, params in _SIGNATURE.findall(text):
        pairs = []
        for p in (p.strip() for p in params.split(",") if p.strip()):
            m = re.fullmatch(r"(.*?)\s*\b(\w+)", p, flags=re.S)
            assert m, f"cannot read parameter {p!r} of {name}"
            pairs.append((" ".join(m.group(1).split()), m.group(2)))
        kernels[name] = pairs
    return kernels


def launcher_source(kernels: dict[str, list[tuple[str, str]]], cu_path: Path) -> str:
    """The translation unit: the header, the CUDA source, then one launcher and one size table per kernel."""
    lines = [f'#include "{HEADER}"', f'#include "{cu_path}"', "#include <type_traits>"]
    for name, params in kernels.items():
        copies = [
            f"    std::remove_cv_t<{t}> a{i};\n    std::memcpy(&a{i}, args[{i}], sizeof(a{i}));"
            for i, (t, _) in enumerate(params)
        ]
        call = ", ".join(f"a{i}" for i in range(len(params)))
        sizes = ", ".join(f"sizeof({t})" for t, _ in params) or "0"
        lines += [
            f'extern "C" int emu_launch_{name}(const unsigned int* grid, const unsigned int* block, '
            "void* const* args) {",
            *copies,
            f"    return cuda_emu::launch(grid, block, [&] {{ {name}({call}); }});",
            "}",
            f'extern "C" const unsigned long long emu_sizes_{name}[] = {{{sizes}}};',
        ]
    return "\n".join(lines) + "\n"


def build(source: str, options: tuple[str, ...], variant: str = "plain") -> tuple[Path, dict[str, list[tuple]]]:
    """Compile (or find in the cache) the emulated module of ``source``; returns the library and the kernels."""
    compiler = gxx()
    if compiler is None:
        raise FileNotFoundError("g++ not found")
    stripped = strip_kernels(source)
    kernels = signatures(stripped, options)
    flags = [*COMMON, *FLAGS[variant], *defines(options)]
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([HEADER.read_text(), stripped, *flags, version]).encode()).hexdigest()[:20]
    folder = Path(tempfile.gettempdir()) / "fcn-cuda-emu" / f"{variant}-{key}"
    lib = folder / "kernels.so"
    if not lib.exists():
        folder.mkdir(parents=True, exist_ok=True)
        cu = folder / "fused.cu"
        cu.write_text(stripped)
        tu = folder / "launchers.cpp"
        tu.write_text(launcher_source(kernels, cu))
        partial = folder / f"kernels.{os.getpid()}.so"
        result = subprocess.run([compiler, *flags, str(tu), "-o", str(partial)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"g++ failed to compile the emulated kernels:\n{result.stderr[-4000:]}")
        os.replace(partial, lib)  # atomic: a concurrent session sees the whole library or none
    return lib, kernels


class EmulatedModule:
    """The emulated kernels of one build: parameter lists and a launcher per kernel."""

    def __init__(self, source: str, options: tuple[str, ...], variant: str = "plain"):
        self.path, kernels = build(source, options, variant)
        self._lib = ctypes.CDLL(str(self.path))
        self.params: dict[str, list[Param]] = {}
        for name, pairs in kernels.items():
            sizes = (ctypes.c_ulonglong * max(1, len(pairs))).in_dll(self._lib, f"emu_sizes_{name}")
            self.params[name] = [Param(t, n, int(sizes[i])) for i, (t, n) in enumerate(pairs)]
        self._lib.emu_set_block_order.argtypes = [ctypes.c_int, ctypes.c_uint]
        self._lib.emu_plant.argtypes = [ctypes.c_int]

    def plant(self, bug: int) -> None:
        """Switch planted bug ``bug`` on (-1: all off); see ``tests/emulation/planted.py``."""
        self._lib.emu_plant(bug)

    def set_block_order(self, order: str, seed: int = 0) -> None:
        """Run the blocks of later launches ``"natural"``, ``"reversed"`` or ``"shuffled"`` (with ``seed``)."""
        self._lib.emu_set_block_order({"natural": 0, "reversed": 1, "shuffled": 2}[order], seed)

    def launch(self, name: str, grid: tuple[int, ...], block: tuple[int, ...], args: list[bytes]) -> None:
        """Run kernel ``name``; ``args``: each argument's bytes, which must be exactly the parameter's size."""
        if name not in self.params:
            raise KeyError(f"{name} is not an emulated kernel")
        params = self.params[name]
        if len(args) != len(params):
            raise TypeError(f"{name} takes {len(params)} arguments, got {len(args)}")
        for p, a in zip(params, args, strict=True):
            if len(a) != p.size:
                raise TypeError(f"{name}: parameter {p.ctype} {p.name} is {p.size} bytes, got {len(a)}")
        buffers = [ctypes.create_string_buffer(a, len(a)) for a in args]
        pointers = (ctypes.c_void_p * max(1, len(args)))(*[ctypes.addressof(b) for b in buffers])
        dims = [(ctypes.c_uint * 3)(*(tuple(d) + (1, 1))[:3]) for d in (grid, block)]
        status = getattr(self._lib, f"emu_launch_{name}")(dims[0], dims[1], pointers)
        if status != 0:
            raise RuntimeError(f"{name}: launch failed with CUDA error {status} (grid {grid}, block {block})")


def arg(value: object) -> bytes:
    """A kernel argument's bytes: a NumPy scalar at its size, a struct (an array of one ``void`` element) by
    value, any other array as the address of its first element."""
    if isinstance(value, numpy.ndarray) and value.dtype.kind == "V" and value.size == 1:
        return value.tobytes()
    if isinstance(value, numpy.ndarray):
        return numpy.uint64(value.ctypes.data).tobytes()
    if isinstance(value, numpy.generic):
        return value.tobytes()
    raise TypeError(f"pass NumPy scalars or arrays, not {type(value).__name__}")
