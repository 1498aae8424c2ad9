"""OpenCL specifics: float16 without cl_khr_fp16, devices without float64, the source as DEBUG=3 shows it."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fusegrad as fg
from fusegrad.codegen.lower import lower
from fusegrad.codegen.opencl import opencl_prelude, render_opencl
from fusegrad.runtime import get_device

pytestmark = pytest.mark.skipif("opencl" not in fg.available_devices(),
                                reason="device 'opencl' is not available on this machine (pip install pyopencl and "
                                       "an OpenCL driver, e.g. Debian's pocl-opencl-icd)")


def _halves(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((8, 37)) * 20).astype(np.float16)


def test_float16_is_stored_as_half_and_rounds_like_numpy() -> None:
    a, b = _halves(1), _halves(2)
    fa, fb = fg.tensor(a, device="opencl"), fg.tensor(b, device="opencl")
    item = fg.schedule(fa * fb + fa)[0]
    source = render_opencl(lower(item, "k"))
    assert "vload_half(" in source and "vstore_half_rte(" in source and "cl_khr_fp16" not in source
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal((fa * fb + fa).numpy(), a * b + a)  # every op rounds to half, as numpy does
        ra, rb = fg.tensor(a, device="numpy"), fg.tensor(b, device="numpy")
        np.testing.assert_array_equal((fa / fb).exp().numpy(), (ra / rb).exp().numpy())
    np.testing.assert_allclose(fa.sum(1).numpy(), a.astype(np.float32).sum(1).astype(np.float16), rtol=1e-3)


def test_source_without_float64_builds_and_runs() -> None:
    """A device without cl_khr_fp64 gets float launch arguments and float accumulators."""
    import pyopencl as cl
    dev = get_device("opencl")
    x = fg.tensor(np.linspace(-3, 3, 40, dtype=np.float32).reshape(4, 10), device="opencl")
    item = [i for i in fg.schedule((x * 0.5).sum(1)) if i.kind == "kernel"][0]
    kernel = lower(item, "k")
    source = render_opencl(kernel, fp64=False)
    assert "double" not in source and "double" not in opencl_prelude(fp64=False)
    program = cl.Program(dev.context, opencl_prelude(fp64=False) + source).build()
    out = cl.Buffer(dev.context, cl.mem_flags.READ_WRITE, 16)
    program.k(dev.queue, (64,), (64,), out, x._node.buffer.handle.alloc.raw, np.float32(0.5))
    got = np.empty(4, np.float32)
    cl.enqueue_copy(dev.queue, got, out)
    np.testing.assert_allclose(got, (x.numpy() * 0.5).sum(1), rtol=1e-6)


def test_debug_3_prints_the_opencl_source(tmp_path) -> None:  # noqa: ANN001
    code = "import fusegrad as fg; print((fg.arange(5., device='opencl') * 1.75).exp2().sum().item())"
    env = {**os.environ, "DEBUG": "3", "XDG_CACHE_HOME": str(tmp_path), "POCL_CACHE_DIR": str(tmp_path / "pocl")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "__kernel void k_" in result.stderr and "realize: 1 kernels" in result.stderr
    assert float(result.stdout) == pytest.approx(sum(2 ** (1.75 * i) for i in range(5)), rel=1e-6)
