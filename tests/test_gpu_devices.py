"""What the accelerator devices (`opencl`, `cuda`) do beyond computing the right values, which the
device-parametrized suite checks: transfers, the gather error flag, program caching, views, MATMUL layouts, the
random stream, and the caching allocator. Each test runs on every accelerator present and skips the others."""
from __future__ import annotations

import numpy as np
import pytest

import fusegrad as fg
from fusegrad.graph import Op, make_node, source_node
from fusegrad.realize import realize
from fusegrad.runtime import get_device

GPUS = ["opencl", "cuda"]
DTYPES = [fg.bool_, fg.uint8, fg.int32, fg.int64, fg.float16, fg.float32, fg.float64]


@pytest.fixture(params=GPUS)
def gpu(request: pytest.FixtureRequest) -> str:
    if request.param not in fg.available_devices():
        pytest.skip(f"device {request.param!r} is not available on this machine")
    return request.param


def _data(shape: tuple[int, ...], dtype: fg.DType, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * 50).astype(dtype.np)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (5,), (4, 33)])
def test_transfers_round_trip_every_dtype_and_shape(gpu: str, dtype: fg.DType, shape: tuple[int, ...]) -> None:
    host = _data(shape, dtype)
    t = fg.tensor(host, dtype=dtype, device=gpu)
    assert t.device == gpu
    np.testing.assert_array_equal(t.numpy(), host)
    np.testing.assert_array_equal(t.cpu().numpy(), host)
    np.testing.assert_array_equal(fg.tensor(host, dtype=dtype).to(gpu).to("numpy").numpy(), host)


def test_out_of_range_gather_raises_and_keeps_raising(gpu: str) -> None:
    x = fg.tensor(np.arange(15.0).reshape(5, 3), device=gpu)
    bad = x.gather(0, fg.tensor([[0, 1, 7]], device=gpu)) * 2
    for _ in range(2):  # nothing half-computed is kept: asking again raises again
        with pytest.raises(IndexError, match="size 5"):
            bad.numpy()
    with pytest.raises(IndexError):
        x[fg.tensor([-6], device=gpu)].numpy()
    np.testing.assert_array_equal(x.gather(0, fg.tensor([[4, 0, 2]], device=gpu)).numpy(), [[12.0, 1.0, 8.0]])


def test_a_graph_seen_before_compiles_nothing(gpu: str) -> None:
    dev = get_device(gpu)
    x = fg.tensor(np.linspace(-2, 2, 60, dtype=np.float32).reshape(6, 10), device=gpu)

    def graph(scale: float) -> fg.Tensor:
        return (x * scale).softmax(-1).sum(0) + x.amax() * scale

    first = graph(0.5).numpy()
    built = dev.programs_built
    np.testing.assert_array_equal(graph(0.5).numpy(), first)
    again = graph(3.25).numpy()  # new constants are launch arguments: same kernels
    assert dev.programs_built == built
    want = graph(3.25).to("numpy").numpy()
    np.testing.assert_allclose(again, want, rtol=1e-6)


def test_all_new_kernels_of_one_realize_build_as_one_program(gpu: str) -> None:
    dev = get_device(gpu)
    x = fg.tensor(np.arange(24.0).reshape(4, 6) + 0.123, device=gpu)  # a constant no other test uses
    outs = [x.exp().sum(1), (x * 2.5).amax(0), x.log_softmax(-1), x[1:3].sqrt()]
    assert sum(item.kind != "view" for item in fg.schedule(*outs)) >= 4
    built = dev.programs_built
    fg.realize(*outs)
    assert dev.programs_built == built + 1


def test_views_share_or_copy_memory_correctly(gpu: str) -> None:
    host = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    x = fg.tensor(host, device=gpu)
    np.testing.assert_array_equal(x.reshape(12, 5).numpy(), host.reshape(12, 5))
    np.testing.assert_array_equal(x[1].numpy(), host[1])  # a dense block at an offset
    np.testing.assert_array_equal(x[2, 1:3].realize().numpy(), host[2, 1:3])
    np.testing.assert_array_equal((x[1] + x[2]).numpy(), host[1] + host[2])


def test_views_of_views_at_aligned_and_unaligned_offsets(gpu: str) -> None:
    """Dense blocks of dense blocks, realized one after another (on OpenCL: sub-buffers cut from the allocation
    itself where aligned, copies elsewhere), read by kernels and by MATMUL."""
    host = np.random.default_rng(0).standard_normal((256, 24)).astype(np.float32)  # rows of 96 bytes
    x = fg.tensor(host, device=gpu)
    y = x[64:].realize()  # 6144 bytes in
    z = y[32:].realize()  # a region of a region
    w = z[1:].realize()  # 96 bytes further: unaligned on OpenCL
    v = w[4:].realize()
    for t, h in [(y, host[64:]), (z, host[96:]), (w, host[97:]), (v, host[101:])]:
        np.testing.assert_array_equal(t.numpy(), h)
        np.testing.assert_array_equal((t * 2).numpy(), h * 2)
    np.testing.assert_allclose((v @ y[:24]).numpy(), host[101:] @ host[64:88], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [fg.float32, fg.float64, fg.float16, fg.int64, fg.bool_], ids=lambda d: d.name)
def test_matmul_of_strided_views(gpu: str, dtype: fg.DType) -> None:
    rng = np.random.default_rng(3)
    a = (rng.standard_normal((2, 6, 5)) * 3).astype(dtype.np)
    b = (rng.standard_normal((2, 7, 6)) * 3).astype(dtype.np)
    fa, fb = fg.tensor(a, dtype=dtype, device=gpu), fg.tensor(b, dtype=dtype, device=gpu)
    cases = [(fa.transpose(1, 2), fb.transpose(1, 2)[..., 1:], a.transpose(0, 2, 1), b.transpose(0, 2, 1)[..., 1:]),
             (fa[0, :4], fb[1, :5, :3], a[0, :4], b[1, :5, :3]),
             (fa[:1].expand(2, 6, 5).transpose(1, 2), fb[:, :6, :], a[:1].repeat(2, 0).transpose(0, 2, 1), b[:, :6])]
    for x, y, xn, yn in cases:
        got = (x @ y).numpy()
        want = (xn.astype(np.float64) @ yn.astype(np.float64))
        if dtype == fg.bool_:
            np.testing.assert_array_equal(got, want > 0)
        elif dtype == fg.float16:
            np.testing.assert_allclose(got.astype(np.float64), want, rtol=2e-3, atol=2e-2)
        else:
            np.testing.assert_allclose(got, want.astype(dtype.np), rtol=1e-5, atol=1e-4)


def test_random_streams_are_bit_identical_to_the_cpu_and_numpy_devices(gpu: str) -> None:
    draws = {}
    for device in ["numpy", "cpu", gpu]:
        fg.manual_seed(1234)
        draws[device] = (fg.rand(1000, device=device).numpy(), fg.dropout(fg.ones(64, 64, device=device), 0.3).numpy())
    for device in ["cpu", gpu]:
        np.testing.assert_array_equal(draws[device][0], draws["numpy"][0])
        np.testing.assert_array_equal(draws[device][1], draws["numpy"][1])


NAN, INF = float("nan"), float("inf")
SPECIAL = np.array([NAN, INF, -INF, 0.0, -0.0, 1.0, -1.0, 1e-30, 3e38], dtype=np.float32)


@pytest.mark.parametrize("fn", [
    lambda x: x.exp(), lambda x: x.log(), lambda x: x.sqrt(), lambda x: 1.0 / x, lambda x: x / x,
    lambda x: x.maximum(x.flip(0)), lambda x: x.minimum(x.flip(0)), lambda x: x.relu(), lambda x: x.sigmoid(),
    lambda x: x.amax().reshape(1), lambda x: x[1:].amax().reshape(1), lambda x: x.sum().reshape(1),
    lambda x: x.expand(300, 9).amax(0), lambda x: x.floor(), lambda x: x.half().float() * 2,
])
def test_nan_and_inf_follow_the_reference(gpu: str, fn) -> None:  # noqa: ANN001
    got = fn(fg.tensor(SPECIAL, device=gpu)).numpy()
    want = fn(fg.tensor(SPECIAL, device="numpy")).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0, equal_nan=True)


def test_integer_division_and_remainder_never_trap(gpu: str) -> None:
    for dtype in (np.int64, np.int32):
        lo = np.iinfo(dtype).min
        a, b = np.array([7, -7, lo, 5, lo, 9], dtype), np.array([0, 2, -1, 0, 1, -1], dtype)
        fa, fb = fg.tensor(a, device=gpu), fg.tensor(b, device=gpu)
        ra, rb = fg.tensor(a, device="numpy"), fg.tensor(b, device="numpy")
        np.testing.assert_array_equal(fa.div(fb, rounding_mode="trunc").numpy(),
                                      ra.div(rb, rounding_mode="trunc").numpy())
        np.testing.assert_array_equal(fa.fmod(fb).numpy(), ra.fmod(rb).numpy())


@pytest.mark.parametrize("shape,axes", [((100_000,), None), ((3, 5000), 1), ((5000, 3), 0), ((40, 50, 30), (0, 2))])
def test_long_reductions(gpu: str, shape: tuple[int, ...], axes: tuple[int, ...] | int | None) -> None:
    host = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    host.flat[len(host.flat) // 2] = 7.5  # a known maximum
    x = fg.tensor(host, device=gpu)
    got_sum = (x.sum(axes) if axes is not None else x.sum()).numpy()
    np.testing.assert_allclose(got_sum, host.astype(np.float64).sum(axes), rtol=1e-5, atol=1e-3)
    got_max = (x.amax(axes) if axes is not None else x.amax()).numpy()
    np.testing.assert_array_equal(got_max, host.max(axes))
    host.flat[3] = np.nan
    assert np.isnan(fg.tensor(host, device=gpu).amax().item())


def test_assign_writes_into_the_existing_buffer(gpu: str) -> None:
    target = fg.tensor(np.zeros((2, 3), np.float32), device=gpu)
    buffer = target._node.buffer
    load = source_node(Op.LOAD, buffer, (2, 3), fg.float32, gpu)
    load.buffer = buffer
    value = make_node(Op.ADD, (load, source_node(Op.CONST, 1.5, (2, 3), fg.float32, gpu)))
    node = make_node(Op.ASSIGN, (load, value))
    realize([node])
    assert node.buffer is buffer
    np.testing.assert_array_equal(target.numpy(), np.full((2, 3), 1.5, np.float32))


def test_freed_memory_is_reused(gpu: str) -> None:
    dev = get_device(gpu)
    a = dev.alloc(10_000)
    raw = a.alloc.raw
    del a
    b = dev.alloc(9_500)  # the same size class
    assert b.alloc.raw is raw or b.alloc.raw == raw
    before = dev.pool.allocated_bytes
    for _ in range(20):
        fg.tensor(np.ones(5000, np.float32), device=gpu).exp().sum().item()
    assert dev.pool.allocated_bytes - before < 1 << 20  # the steady state allocates nothing new
