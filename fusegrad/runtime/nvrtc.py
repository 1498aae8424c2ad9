"""Compile CUDA C++ with NVRTC (NVIDIA's `cuda-bindings` + the `nvidia-cuda-nvrtc` wheel), cached on disk.

No GPU is needed to compile, so CI checks the CUDA renderer's output with this everywhere NVRTC is installed. The
runtime asks for a CUBIN of the device's exact architecture (`sm_90`): a cubin needs no PTX JIT, so a newer NVRTC
than the driver still works; only an architecture NVRTC does not know falls back to PTX for the driver to JIT.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

# no multiply-add contraction but the MULADD primitive's (NVRTC contracts by default, the C and OpenCL kernels do not,
# and a contraction decided by fusion would make a jitted step differ from its eager run)
OPTIONS = ["--std=c++17", "--fmad=false"]


class CudaCompileError(RuntimeError):
    """NVRTC rejected generated source (a fusegrad bug: please report it with DEBUG=3 output)."""


def _nvrtc() -> Any:  # noqa: ANN401 - the cuda.bindings.nvrtc module
    from cuda.bindings import nvrtc
    return nvrtc


def _ok(result: tuple, what: str) -> Any:  # noqa: ANN401
    err, *values = result
    if int(err) != 0:
        raise CudaCompileError(f"nvrtc: {what} failed: {err!r}")
    return values[0] if len(values) == 1 else values


@cache
def nvrtc_version() -> tuple[int, int] | None:
    """(major, minor) of the loadable NVRTC library, or None when there is none (never raises)."""
    try:
        major, minor = _ok(_nvrtc().nvrtcVersion(), "nvrtcVersion")
        return int(major), int(minor)
    except Exception:  # cuda-bindings or the NVRTC library missing
        return None


@cache
def supported_archs() -> tuple[int, ...]:
    """The sm_XY numbers (as XY) this NVRTC can build cubins for."""
    return tuple(int(a) for a in _ok(_nvrtc().nvrtcGetSupportedArchs(), "nvrtcGetSupportedArchs"))


def target_for(capability: int) -> tuple[str, bool]:
    """(architecture flag value, is_cubin) for a device of compute capability XY: its own sm_XY when NVRTC knows it,
    else PTX for the newest virtual architecture not above it."""
    archs = supported_archs()
    if capability in archs:
        return f"sm_{capability}", True
    below = [a for a in archs if a <= capability] or [min(archs)]
    return f"compute_{max(below)}", False


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / "fusegrad" / "cuda"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def compile_cuda(source: str, arch: str, use_cache: bool = True) -> bytes:
    """A CUBIN (arch `sm_XY`) or PTX (arch `compute_XY`) of `source`, from the disk cache or a fresh NVRTC run."""
    cubin = arch.startswith("sm_")
    options = [f"--gpu-architecture={arch}", *OPTIONS]
    key = hashlib.sha256("\0".join([source, *options, repr(nvrtc_version())]).encode()).hexdigest()[:32]
    path = _cache_dir() / f"{key}.{'cubin' if cubin else 'ptx'}" if use_cache else None
    if path is not None and path.exists() and path.stat().st_uid == os.getuid() and path.stat().st_size:
        return path.read_bytes()
    nv = _nvrtc()
    prog = _ok(nv.nvrtcCreateProgram(source.encode(), b"fusegrad.cu", 0, [], []), "nvrtcCreateProgram")
    try:
        (err,) = nv.nvrtcCompileProgram(prog, len(options), [o.encode() for o in options])
        if int(err) != 0:
            size = _ok(nv.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
            log = b" " * size
            _ok(nv.nvrtcGetProgramLog(prog, log), "nvrtcGetProgramLog")
            raise CudaCompileError(f"nvrtc failed on generated code:\n{log.decode(errors='replace')[-4000:]}")
        get_size, get = (nv.nvrtcGetCUBINSize, nv.nvrtcGetCUBIN) if cubin else (nv.nvrtcGetPTXSize, nv.nvrtcGetPTX)
        binary = b" " * _ok(get_size(prog), "size of the output")
        _ok(get(prog, binary), "output")
    finally:
        nv.nvrtcDestroyProgram(prog)
    if path is not None:  # written whole under a temporary name, then renamed: readers never see half a file
        fd, tmp = tempfile.mkstemp(dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(binary)
        os.replace(tmp, path)
    return binary
