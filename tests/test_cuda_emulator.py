"""The CPU emulation of CUDA that the `cuda` device's tests run on without a GPU (tests/cuda_emulator.py) refuses what a
GPU would not survive: a warp shuffle that some lanes skip, a barrier some threads never reach, a write past an
allocation, a synchronize or allocation inside a stream capture. Its cuBLAS is column-major GEMM. And the long
reductions the cuda renderer gives a block per output (shared memory, warp shuffles) compute the right values."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
from cuda_emulator import EmulatedCublas, EmulatedDriver, EmulatorError, _build_kernels, emulator_available

import fusegrad as fg

pytestmark = pytest.mark.skipif(not emulator_available(), reason="the CUDA emulator needs g++")


def _launch(source: str, grid: int, block: int, *args: int) -> EmulatedDriver:
    """Build `source` (one kernel named k) and launch it with 8-byte arguments, as CudaDevice does."""
    driver = EmulatedDriver()
    kernel = _build_kernels({"k": source})["k"]
    values = np.array(args, np.uint64)
    addresses = values.ctypes.data + 8 * np.arange(len(values), dtype=np.uint64)
    driver.cuLaunchKernel(kernel, grid, 1, 1, block, 1, 1, 0, 1, addresses.ctypes.data, 0)
    return driver


def _device_array(driver: EmulatedDriver, values: np.ndarray) -> int:
    address = driver.cuMemAlloc(values.nbytes)[1]
    driver.cuMemcpyHtoDAsync(address, values.ctypes.data, values.nbytes, 1)
    return address


def _read(address: int, like: np.ndarray) -> np.ndarray:
    out = np.empty_like(like)
    ctypes.memmove(out.ctypes.data, address, out.nbytes)
    return out


BLOCK_SUM = """extern "C" __global__ void k(float* __restrict__ out, const float* __restrict__ in, long long n) {
  __shared__ float part[8];
  float acc = 0;
  for (long long i = threadIdx.x; i < n; i += blockDim.x) acc += in[blockIdx.x * n + i];
  for (int o = 16; o > 0; o >>= 1) { float other = __shfl_down_sync(0xffffffffu, acc, o); acc += other; }
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x == 0) { float total = 0; for (int w = 0; w < 8; w++) total += part[w]; out[blockIdx.x] = total; }
}
"""


def test_a_block_of_threads_meets_at_barriers_and_shuffles() -> None:
    driver = EmulatedDriver()
    x = np.random.default_rng(0).standard_normal((3, 1000)).astype(np.float32)
    src, out = _device_array(driver, x), driver.cuMemAlloc(12)[1]
    _launch(BLOCK_SUM, 3, 256, out, src, 1000)
    np.testing.assert_allclose(_read(out, np.zeros(3, np.float32)), x.sum(1), rtol=1e-5)


def test_a_shuffle_that_some_lanes_skip_is_an_error() -> None:
    # what the cuda renderer printed for max until the emulator ran it: the second shuffle only where a > acc
    source = """extern "C" __global__ void k(float* __restrict__ out) {
  float acc = threadIdx.x;
  for (int o = 16; o > 0; o >>= 1)
    acc = __shfl_down_sync(0xffffffffu, acc, o) > acc ? __shfl_down_sync(0xffffffffu, acc, o) : acc;
  if (threadIdx.x == 0) out[0] = acc;
}
"""
    driver = EmulatedDriver()
    with pytest.raises(EmulatorError, match="met at different shuffles"):
        _launch(source, 1, 32, driver.cuMemAlloc(4)[1])


def test_lanes_split_between_a_shuffle_and_a_barrier_deadlock() -> None:
    source = """extern "C" __global__ void k(float* __restrict__ out) {
  float x = threadIdx.x;
  if (threadIdx.x & 1) __syncthreads(); else x = __shfl_down_sync(0xffffffffu, x, 1);
  out[threadIdx.x] = x;
}
"""
    with pytest.raises(EmulatorError, match="deadlocked"):
        _launch(source, 1, 64, EmulatedDriver().cuMemAlloc(256)[1])


def test_threads_at_different_barriers_are_an_error() -> None:
    source = """extern "C" __global__ void k(float* __restrict__ out) {
  if (threadIdx.x < 64) __syncthreads(); else __syncthreads();
  out[threadIdx.x] = 1;
}
"""
    with pytest.raises(EmulatorError, match="different shuffles or barriers"):
        _launch(source, 1, 128, EmulatedDriver().cuMemAlloc(512)[1])


def test_a_write_past_an_allocation_is_an_error() -> None:
    source = """extern "C" __global__ void k(float* __restrict__ out, long long n) {
  for (long long i = threadIdx.x; i <= n; i += blockDim.x) out[i] = 0;  // one too many
}
"""
    driver = EmulatedDriver()
    kernel = _build_kernels({"k": source})["k"]
    out = driver.cuMemAlloc(40)[1]
    values = np.array([out, 10], np.uint64)
    addresses = values.ctypes.data + 8 * np.arange(2, dtype=np.uint64)
    with pytest.raises(EmulatorError, match="wrote past the end of a 40-byte allocation"):
        driver.cuLaunchKernel(kernel, 1, 1, 1, 32, 1, 1, 0, 1, addresses.ctypes.data, 0)


def test_a_capture_records_stream_work_and_refuses_what_capture_forbids() -> None:
    driver = EmulatedDriver()
    x = np.arange(4, dtype=np.float32)
    a, b = _device_array(driver, x), driver.cuMemAlloc(16)[1]
    driver.cuStreamBeginCapture(1, 1)
    driver.cuMemcpyDtoDAsync(b, a, 16, 1)
    for forbidden in (lambda: driver.cuStreamSynchronize(1), lambda: driver.cuMemAlloc(8),
                      lambda: driver.cuMemcpyHtoDAsync(a, x.ctypes.data, 16, 1)):
        with pytest.raises(EmulatorError, match="captur"):
            forbidden()
    graph = driver.cuGraphInstantiate(driver.cuStreamEndCapture(1)[1], 0)[1]
    assert not _read(b, x).tolist() == x.tolist()  # recorded, not run
    driver.cuGraphLaunch(graph, 1)
    assert _read(b, x).tolist() == x.tolist()


@pytest.mark.parametrize("transa, transb", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_the_emulated_cublas_is_column_major_strided_batched_gemm(transa: int, transb: int) -> None:
    rng = np.random.default_rng(1)
    m, n, k, batch = 3, 4, 5, 2
    # column-major op(A) is m x k: stored as A (m x k, ld >= m) or as A^T (k x m, ld >= k); ld one larger than tight
    a_cols = rng.standard_normal((batch, k if transa == 0 else m, (m if transa == 0 else k) + 1)).astype(np.float32)
    b_cols = rng.standard_normal((batch, n if transb == 0 else k, (k if transb == 0 else n) + 1)).astype(np.float32)
    op_a = a_cols[:, :, :-1].transpose(0, 2, 1)  # memory is column after column: element (r, c) at c * ld + r
    op_b = b_cols[:, :, :-1].transpose(0, 2, 1)
    op_a = op_a if transa == 0 else op_a.transpose(0, 2, 1)
    op_b = op_b if transb == 0 else op_b.transpose(0, 2, 1)
    c = np.zeros((batch, n, m), np.float32)  # column-major m x n, ld = m
    driver = EmulatedDriver()
    lib = EmulatedCublas(driver)
    alpha, beta = ctypes.c_float(2.0), ctypes.c_float(0.0)
    status = lib.cublasGemmStridedBatchedEx(
        None, transa, transb, m, n, k, ctypes.byref(alpha), a_cols.ctypes.data, 0, a_cols.shape[2],
        a_cols[0].size, b_cols.ctypes.data, 0, b_cols.shape[2], b_cols[0].size, ctypes.byref(beta), c.ctypes.data,
        0, m, m * n, batch, 68, -1)
    assert status == 0
    np.testing.assert_allclose(c.transpose(0, 2, 1), 2 * op_a @ op_b, rtol=1e-5)


@pytest.fixture
def cuda() -> str:
    if "cuda" not in fg.available_devices():
        pytest.skip("device 'cuda' is not available on this machine")
    return "cuda"


@pytest.mark.parametrize("shape, dim", [((4, 1000), 1), ((1000, 3), 0), ((2, 130, 7), 1), ((300,), 0),
                                        ((5, 129), 1), ((3, 2, 160), (0, 2))])
def test_long_reductions_with_a_block_per_output(cuda: str, shape: tuple, dim: int | tuple) -> None:
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    x.flat[7] = np.nan if isinstance(dim, int) else x.flat[7]  # max keeps NaN through the shuffles
    t = fg.tensor(x, device=cuda)
    np.testing.assert_allclose(t.sum(dim).numpy(), np.sum(x, axis=dim), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(t.amax(dim).numpy(), np.max(x, axis=dim))
    np.testing.assert_array_equal(t.amin(dim).numpy(), np.min(x, axis=dim))
    np.testing.assert_array_equal((t > 0).any(dim).numpy(), np.any(x > 0, axis=dim))
    if isinstance(dim, int):
        ref = np.where(np.isnan(x).any(dim), np.argmax(np.isnan(x), dim), np.argmax(np.nan_to_num(x, nan=0), dim))
        np.testing.assert_array_equal(t.argmax(dim).numpy(), ref)
    half = t.half()
    np.testing.assert_allclose(half.float().sum(dim).numpy(), np.sum(x.astype(np.float16).astype(np.float32),
                                                                       axis=dim), rtol=1e-3, atol=1e-3)
