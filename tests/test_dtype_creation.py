"""Dtypes against torch: type promotion (tensor pairs, 0-d tensors, Python scalars), conversions; tensor creation,
random numbers and seeding, reading values back (numpy/item/tolist/repr) and tensor attributes."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from helpers import assert_close, compare

import fusegrad as fg

NP_DTYPES = [np.bool_, np.uint8, np.int32, np.int64, np.float16, np.float32, np.float64]
NAMES = ["bool", "uint8", "int32", "int64", "float16", "float32", "float64"]


def lib(x):
    """The framework a tensor belongs to, so one lambda can name dtypes in both."""
    return torch if isinstance(x, torch.Tensor) else fg


def sample(dtype, shape=(2, 3)) -> np.ndarray:
    """Small values every dtype holds exactly (bools alternate)."""
    n = int(np.prod(shape))
    if dtype is np.bool_:
        return (np.arange(n) % 2 == 0).reshape(shape)
    return (np.arange(n) % 4 + (0.5 if np.dtype(dtype).kind == "f" else 1)).astype(dtype).reshape(shape)


def tname(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


# ---- type promotion ----

@pytest.mark.parametrize("op", ["add", "mul"])
@pytest.mark.parametrize("da,db", list(itertools.product(NP_DTYPES, NP_DTYPES)),
                         ids=[f"{a}-{b}" for a, b in itertools.product(NAMES, NAMES)])
def test_promotion_of_every_dtype_pair(device, op, da, db):
    fn = (lambda a, b: a + b) if op == "add" else (lambda a, b: a * b)
    tol = 1e-3 if np.float16 in (da, db) else 1e-6
    compare(fn, None, sample(da), sample(db, (3,)), device=device, atol=tol, rtol=tol)
    compare(fn, None, sample(da, ()), sample(db), device=device, atol=tol, rtol=tol)  # 0-d vs dimensioned
    compare(fn, None, sample(da), sample(db, ()), device=device, atol=tol, rtol=tol)
    compare(fn, None, sample(da, ()), sample(db, ()), device=device, atol=tol, rtol=tol)  # both 0-d


@pytest.mark.parametrize("scalar", [True, 2, 2.5], ids=["bool", "int", "float"])
@pytest.mark.parametrize("dtype", NP_DTYPES, ids=NAMES)
def test_python_scalars_with_each_dtype(device, dtype, scalar):
    tol = 1e-3 if dtype is np.float16 else 1e-6
    for fn in (lambda a: a + scalar, lambda a: scalar + a, lambda a: a * scalar, lambda a: scalar * a):
        compare(fn, None, sample(dtype), device=device, atol=tol, rtol=tol)
        compare(fn, None, sample(dtype, ()), device=device, atol=tol, rtol=tol)
    if dtype is not np.bool_:
        compare(lambda a: a / scalar, None, sample(dtype), device=device, atol=tol, rtol=tol)
    if dtype is not np.bool_ and scalar is not True:
        compare(lambda a: a - scalar, None, sample(dtype), device=device, atol=tol, rtol=tol)
    else:  # torch refuses subtraction with bools
        for t in (fg.tensor(sample(dtype), device=device), torch.tensor(sample(dtype))):
            with pytest.raises((TypeError, RuntimeError)):
                t - scalar


def test_promote_types_function():
    for na, nb in itertools.product(NAMES, repeat=2):
        want = torch.promote_types(getattr(torch, na), getattr(torch, nb))
        assert fg.promote_types(getattr(fg, na if na != "bool" else "bool_"),
                                getattr(fg, nb if nb != "bool" else "bool_")).name == tname(torch.empty(0, dtype=want))


MIXED = {  # ops whose operands have different dtypes: promotion happens before the op, as in torch
    "maximum": lambda a, b: a.maximum(b), "minimum": lambda a, b: a.minimum(b), "fmod": lambda a, b: a.fmod(b),
    "remainder": lambda a, b: a % b, "floordiv": lambda a, b: a // b, "pow": lambda a, b: b.abs() ** a,
    "div_trunc": lambda a, b: a.div(b, rounding_mode="trunc"),
    "div_floor": lambda a, b: a.div(b, rounding_mode="floor"),
    "eq": lambda a, b: a == b, "lt": lambda a, b: a < b, "where": lambda a, b: lib(a).where(a > 1, a, b),
    "lerp": lambda a, b: b.lerp(b * 2, 0.5), "clamp": lambda a, b: a.clamp(b, b + 3),
}


@pytest.mark.parametrize("name", list(MIXED))
@pytest.mark.parametrize("da,db", [(np.int32, np.float32), (np.int64, np.float64), (np.uint8, np.float16),
                                   (np.int32, np.int64), (np.float32, np.float64), (np.uint8, np.int32)],
                         ids=lambda d: np.dtype(d).name)
def test_mixed_dtype_ops(device, name, da, db):
    a = np.array([7, 1, 2, 5, 3], da)
    b = (np.array([2, 3, 2, 4, 5]) * (1 if np.dtype(db).kind in "iu" else -1.5)).astype(db)
    if name in ("lerp",) and np.dtype(db).kind != "f":
        pytest.skip("lerp needs floats")
    if name in ("maximum", "minimum", "pow", "where") and np.dtype(db).kind == "f":  # b is negative here
        b = np.abs(b)
    tol = 2e-3 if np.float16 in (da, db) else 1e-6
    grad = name != "floordiv"  # torch has no derivative for floor_divide
    compare(MIXED[name], None, a, b, device=device, grad=grad, atol=tol, rtol=tol)


def test_uint8_and_int_wraparound(device):
    u, v = np.array([200, 5, 0], np.uint8), np.array([100, 3, 1], np.uint8)
    for fn in (lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a - b, lambda a, b: a // b, lambda a, b: a % b,
               lambda a, b: a.minimum(b), lambda a, b: a.maximum(b)):
        compare(fn, None, u, v, device=device)
    for fn in (lambda a: a < -1, lambda a: a == -56, lambda a: a + 300, lambda a: a * -1, lambda a: a.abs(),
               lambda a: a.sign(), lambda a: a.relu(), lambda a: a.square()):
        compare(fn, None, u, device=device)  # Python ints wrap into the tensor's dtype first, like torch
    compare(lambda a: a + 2**40, None, np.array([1, 2], np.int32), device=device)
    compare(lambda a: a.square(), None, np.array([True, False]), device=device)  # bool squares to int64


@pytest.mark.parametrize("name", ["exp", "sigmoid", "sqrt", "div", "sub", "maximum"])
def test_float16_forward(device, name):
    fns = {"exp": lambda x: x.exp(), "sigmoid": lambda x: x.sigmoid(), "sqrt": lambda x: x.abs().sqrt(),
           "div": lambda x: x / 3, "sub": lambda x: x - x.flip(0), "maximum": lambda x: x.maximum(x.flip(0))}
    x = np.linspace(-3, 3, 13).astype(np.float16)
    compare(fns[name], None, x, device=device, atol=2e-3, rtol=2e-3)


# ---- conversions ----

CONVERSIONS = {
    "float": lambda x: x.float(), "double": lambda x: x.double(), "half": lambda x: x.half(),
    "int": lambda x: x.int(), "long": lambda x: x.long(), "bool": lambda x: x.bool(),
    "to_int32": lambda x: x.to(lib(x).int32), "to_kw": lambda x: x.to(dtype=lib(x).float64),
    "type": lambda x: x.type(lib(x).int64), "to_uint8": lambda x: x.abs().to(lib(x).uint8),
    "to_same": lambda x: x.to(x.dtype),
}


@pytest.mark.parametrize("name", list(CONVERSIONS))
@pytest.mark.parametrize("dtype", NP_DTYPES, ids=NAMES)
def test_conversions(device, name, dtype):
    values = np.array([-2.7, -1.5, -0.5, 0.0, 0.3, 1.5, 2.9, 100.99])  # float -> int truncates toward zero
    x = values.astype(dtype) if dtype is not np.bool_ else values > 0
    if dtype is np.uint8:
        x = np.abs(values).astype(np.uint8)
    if name == "to_uint8" and dtype is np.bool_:
        pytest.skip("abs() of a bool tensor is an error in torch")
    compare(CONVERSIONS[name], None, x, device=device, atol=1e-3 if dtype is np.float16 else 1e-7)


def test_conversion_of_special_values(device):
    x = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-30])
    compare(lambda t: t.bool(), None, x, device=device)  # NaN is nonzero, so True
    compare(lambda t: t.float(), None, x, device=device)
    compare(lambda t: t.half(), None, np.array([70000.0, 1e-8, 0.1]), device=device)  # overflow to inf, underflow
    t = fg.tensor([1.5, -2.5]).long()
    assert t.dtype == fg.int64 and t.tolist() == [1, -2]


def test_to_other_tensor_and_device():
    x, y = fg.tensor([1.7, -1.7]), fg.tensor([1], dtype=fg.int32)
    assert x.to(y).dtype == fg.int32 and x.to(y).tolist() == [1, -1]
    assert x.to("numpy").device == "numpy" and x.to("numpy", fg.float64).dtype == fg.float64
    assert x.to(fg.float32) is x  # no-op conversions return the same tensor, like torch



def test_synchronize_waits_for_enqueued_work(device: str) -> None:
    """fg.synchronize(device) (and fg.cuda.synchronize, like torch's) returns once queued kernels have run."""
    x = fg.arange(1 << 16, dtype=fg.float32, device=device)
    y = (x * 0.5).sum().realize()  # enqueued (on accelerators, running asynchronously)
    fg.synchronize(device)
    fg.cuda.synchronize()  # without a GPU: nothing to wait for
    assert np.isclose(y.item(), 0.5 * (1 << 16) * ((1 << 16) - 1) / 2, rtol=1e-6)
    fg.synchronize()  # the default device
    with pytest.raises(ValueError, match="unknown device"):
        fg.synchronize("tpu")


def test_device_objects_like_torch_device():
    dev = fg.device("cuda" if fg.cuda.is_available() else "cpu")
    assert fg.cuda.is_available() == ("cuda" in fg.available_devices())
    assert fg.cuda.device_count() == int(fg.cuda.is_available())
    assert isinstance(dev, fg.device) and isinstance(dev, str) and dev.index is None
    cpu = fg.device("cpu")
    assert (cpu.type, cpu.index, repr(cpu)) == ("cpu", None, repr(torch.device("cpu")))
    for spelled in [fg.device("cpu:0"), fg.device("cpu", 0), fg.device(fg.device("cpu", 0))]:
        assert (spelled.type, spelled.index, repr(spelled)) == ("cpu", 0, repr(torch.device("cpu", 0)))
    assert fg.device(cpu) is cpu
    x = fg.tensor([1.0, 2.0], device=fg.device("numpy"))
    assert x.device == "numpy" and x.to(cpu).device == "cpu" and fg.zeros(2, device=cpu).device == "cpu"
    assert fg.nn.Linear(2, 2).to(fg.device("numpy")).weight.device == "numpy"
    with pytest.raises(ValueError, match="FUSEGRAD_CUDA_DEVICE"):
        fg.device("cuda:1")
    with pytest.raises(ValueError, match="must not include an index"):
        fg.device("cpu:0", 0)
    for bad in ["cpu:x", ":0", "cpu:-1"]:
        with pytest.raises(ValueError, match="invalid device string"):
            fg.device(bad)
    with pytest.raises(ValueError, match="non-negative int"):
        fg.device("cpu", -1)
    with pytest.raises(TypeError):
        fg.device(0)
    with pytest.raises(ValueError, match="unknown device 'nonesuch'"):
        fg.zeros(1).to(fg.device("nonesuch"))


# ---- creation ----

TENSOR_DATA = {
    "ints": [1, 2, 3], "floats": [1.0, 2.5], "mixed_int_float": [1, 2.5], "bools": [True, False],
    "bool_int": [True, 2], "nested": [[1, 2], [3, 4], [5, 6]], "nested_float": [[1.0], [2.0]], "int0d": 3,
    "float0d": 2.5, "bool0d": True, "empty": [], "np_f64": np.array([1.5, 2.0]), "np_i32": np.array([1, 2], np.int32),
    "np_u8": np.array([[1, 255]], np.uint8), "np_f16": np.array([0.1], np.float16), "np_bool": np.array([True]),
    "np_0d": np.array(4.0), "np_scalar_f64": np.float64(1.5), "np_scalar_i32": np.int32(7),
    "np_noncontig": np.arange(12.0).reshape(3, 4).T, "negative": [-1, -2**40],
}


@pytest.mark.parametrize("name", list(TENSOR_DATA))
def test_tensor_dtype_inference(name):
    data = TENSOR_DATA[name]
    got, want = fg.tensor(data), torch.tensor(data)
    assert got.dtype.name == tname(want), f"{name}: {got.dtype} vs {want.dtype}"
    assert got.shape == tuple(want.shape)
    assert_close(got, want, 0, 0)


def test_tensor_options():
    x = fg.tensor([1, 2], dtype=fg.float64, requires_grad=True)
    assert x.dtype == fg.float64 and x.requires_grad and x.is_leaf
    assert fg.tensor([1.5], dtype="float16").dtype == fg.float16
    copy = fg.tensor(x)
    assert copy.dtype == fg.float64 and copy.tolist() == [1.0, 2.0] and not copy.requires_grad
    with pytest.raises(RuntimeError):
        fg.tensor([1, 2], requires_grad=True)  # only floating-point tensors can require grad
    with pytest.raises((TypeError, ValueError)):
        fg.tensor([[1, 2], [3]])  # ragged


SHAPED_FACTORIES = {
    "zeros": lambda m, *s, **k: m.zeros(s, **k), "ones": lambda m, *s, **k: m.ones(s, **k),
    "zeros_varargs": lambda m, *s, **k: m.zeros(*s, **k) if s else m.zeros(s, **k),
    "full": lambda m, *s, **k: m.full(s, 7, **k), "full_float": lambda m, *s, **k: m.full(s, -1.5, **k),
    "full_bool": lambda m, *s, **k: m.full(s, True, **k),
}


@pytest.mark.parametrize("name", list(SHAPED_FACTORIES))
@pytest.mark.parametrize("shape", [(2, 3), (), (0, 4), (1,)])
def test_shaped_factories(device, name, shape):
    make = SHAPED_FACTORIES[name]
    assert make(fg, *shape, device=device).device == device
    assert_close(make(fg, *shape, device=device), make(torch, *shape), 0, 0)
    assert_close(make(fg, *shape, dtype=fg.int32, device=device), make(torch, *shape, dtype=torch.int32), 0, 0)
    assert_close(make(fg, *shape, dtype=fg.float64, device=device), make(torch, *shape, dtype=torch.float64), 0, 0)
    assert fg.zeros(shape).shape == shape and fg.ones(list(shape)).shape == shape  # a size tuple or list works too


def test_empty_and_like_forms():
    assert fg.empty(2, 3).shape == (2, 3) and fg.empty(2, 3).dtype == fg.float32
    assert fg.empty((4,), dtype=fg.int64).dtype == fg.int64
    x = fg.tensor([[1, 2, 3]], dtype=fg.int32)
    t = torch.tensor([[1, 2, 3]], dtype=torch.int32)
    for name in ("zeros_like", "ones_like"):
        assert_close(getattr(fg, name)(x), getattr(torch, name)(t), 0, 0)
        assert_close(getattr(fg, name)(x, dtype=fg.float64), getattr(torch, name)(t, dtype=torch.float64), 0, 0)
    assert_close(fg.full_like(x, 5), torch.full_like(t, 5), 0, 0)
    assert_close(fg.full_like(x, 2.5, dtype=fg.float32), torch.full_like(t, 2.5, dtype=torch.float32), 0, 0)
    assert fg.empty_like(x).shape == (1, 3) and fg.empty_like(x).dtype == fg.int32
    f = fg.zeros(3, 2, dtype=fg.float64)
    for name in ("rand_like", "randn_like"):
        r = getattr(fg, name)(f)
        assert r.shape == (3, 2) and r.dtype == fg.float64
    r = fg.randint_like(x, 10)
    assert r.shape == (1, 3) and r.dtype == fg.int32 and ((r.numpy() >= 0) & (r.numpy() < 10)).all()


ARANGE_ARGS = [(5,), (2, 7), (0, 1, 0.1), (10, 0, -3), (5.0,), (1, 2.5, 0.5), (-1, -10, -2.5), (0, 0), (0.5, 3),
               (-3, 4, 2), (0, -1, -0.25)]


@pytest.mark.parametrize("args", ARANGE_ARGS, ids=str)
def test_arange(device, args):
    assert fg.arange(*args, device=device).device == device
    assert_close(fg.arange(*args, device=device), torch.arange(*args), 1e-6, 1e-6)
    assert_close(fg.arange(*args, dtype=fg.float64), torch.arange(*args, dtype=torch.float64), 1e-12, 1e-12)


def test_arange_errors():
    for args in [(3, 1), (0, 5, -1), (0, 1, 0)]:
        for m in (fg, torch):
            with pytest.raises((ValueError, RuntimeError)):
                m.arange(*args)


@pytest.mark.parametrize("args", [(0, 1, 5), (-1, 1, 1), (2, -3, 7), (0, 1, 0), (1.5, 1.5, 3), (0, 10, 11)],
                         ids=str)
def test_linspace(device, args):
    assert_close(fg.linspace(*args, device=device), torch.linspace(*args), 1e-6, 1e-6)
    assert_close(fg.linspace(*args, dtype=fg.float64), torch.linspace(*args, dtype=torch.float64), 1e-12, 1e-12)


@pytest.mark.parametrize("args", [(3,), (2, 4), (4, 2), (1,), (0,)], ids=str)
def test_eye(device, args):
    assert_close(fg.eye(*args, device=device), torch.eye(*args), 0, 0)
    assert_close(fg.eye(*args, dtype=fg.int64), torch.eye(*args, dtype=torch.int64), 0, 0)


def test_from_numpy_keeps_dtype_and_values():
    for dtype in NP_DTYPES:
        arr = sample(dtype, (2, 3))
        t = fg.from_numpy(arr)
        assert t.dtype.name == tname(torch.from_numpy(arr)) and np.array_equal(t.numpy(), arr)
    t = fg.from_numpy(np.arange(6.0).reshape(2, 3).T)  # non-contiguous source
    assert t.shape == (3, 2) and t.tolist() == [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]
    with pytest.raises(TypeError):
        fg.from_numpy([1, 2])


# ---- random numbers ----

def test_manual_seed_reproducibility():
    for make in (lambda: fg.rand(4, 5), lambda: fg.randn(3, 3), lambda: fg.randint(0, 100, (10,)),
                 lambda: fg.normal(1.0, 2.0, size=(6,))):
        fg.manual_seed(123)
        a, a2 = make().numpy(), make().numpy()
        fg.manual_seed(123)
        b = make().numpy()
        fg.manual_seed(124)
        c = make().numpy()
        assert np.array_equal(a, b), "same seed, same numbers"
        assert not np.array_equal(a, c), "different seeds differ"
        assert not np.array_equal(a, a2), "successive draws differ"


def test_rand_and_randn_statistics(device):
    fg.manual_seed(0)
    u = fg.rand(100_000, device=device)
    v = u.numpy()
    assert u.dtype == fg.float32 and v.min() >= 0 and v.max() < 1
    assert abs(v.mean() - 0.5) < 0.01 and abs(v.std() - 12**-0.5) < 0.01
    z = fg.randn(100_000, device=device).numpy()
    assert np.isfinite(z).all() and abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    assert abs(np.mean(np.abs(z) < 1) - 0.6827) < 0.01  # shape of the distribution, not just its moments
    n = fg.normal(2.0, 3.0, size=(100_000,), device=device).numpy()
    assert abs(n.mean() - 2) < 0.05 and abs(n.std() - 3) < 0.05
    assert fg.rand(2, 3, dtype=fg.float64).dtype == fg.float64 and fg.randn((2, 3)).shape == (2, 3)
    r = fg.randn(3, requires_grad=True)
    assert r.requires_grad and r.is_leaf


@pytest.mark.parametrize("args", [(10, (1000,)), (3, 10, (50, 20)), (-5, 5, (2000,)), (1, 2, (7,))], ids=str)
def test_randint(device, args):
    r = fg.randint(*args, device=device)
    want = torch.randint(*args)
    low, high = (0, args[0]) if len(args) == 2 else args[:2]
    v = r.numpy()
    assert r.dtype == fg.int64 and r.shape == tuple(want.shape) and r.device == device
    assert v.min() >= low and v.max() < high
    if v.size >= 1000:
        assert set(np.unique(v)) == set(range(low, high))  # every value appears
    assert fg.randint(0, 4, (3,), dtype=fg.int32).dtype == fg.int32


# ---- reading values back and attributes ----

def test_numpy_item_tolist_array():
    x = fg.tensor([[1.5, 2.0], [3.0, -4.0]])
    assert isinstance(x.numpy(), np.ndarray) and x.numpy().dtype == np.float32
    assert x.tolist() == [[1.5, 2.0], [3.0, -4.0]]
    assert np.asarray(x).dtype == np.float32 and np.asarray(x, dtype=np.float64).dtype == np.float64
    for data in (2.5, 7, True):
        item = fg.tensor(data).item()
        assert item == torch.tensor(data).item() and type(item) is type(torch.tensor(data).item())
    assert fg.tensor([[3]]).item() == 3 and fg.tensor(5).tolist() == 5
    with pytest.raises((ValueError, RuntimeError)):
        x.item()
    x.numpy()[0, 0] = 100  # .numpy() is a copy: writing it does not change the tensor
    assert x.tolist()[0][0] == 1.5


def test_repr():
    r = repr(fg.tensor([1.5, -2.25], requires_grad=True))
    assert r.startswith("tensor(") and "1.5" in r and "-2.25" in r and "requires_grad=True" in r
    assert "requires_grad" not in repr(fg.tensor([1.0]))
    assert "int32" in repr(fg.tensor([1, 2], dtype=fg.int32)) and "1, 2" in repr(fg.tensor([1, 2]))
    assert "True" in repr(fg.tensor([True, False])) and "3" in repr(fg.tensor(3))
    assert "[]" in repr(fg.zeros(0))


def test_attributes():
    x, t = fg.zeros(2, 3, 4), torch.zeros(2, 3, 4)
    assert x.shape == tuple(t.shape) and x.size() == tuple(t.size()) and x.size(1) == 3 and x.size(-1) == 4
    assert x.ndim == 3 and x.dim() == 3 and x.numel() == 24 and x.dtype == fg.float32
    assert x.device == fg.default_device() and not x.requires_grad and x.is_leaf
    assert x.mT.shape == tuple(t.mT.shape) and fg.zeros(2, 5).T.shape == (5, 2)
    w = fg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert w.T.tolist() == [[1.0, 3.0], [2.0, 4.0]] and not w.T.is_leaf and w.T.requires_grad
    y = w * 2
    assert y.requires_grad and not y.is_leaf and w.is_leaf
    assert fg.tensor(1.0).shape == () and fg.tensor(1.0).ndim == 0 and fg.tensor(1.0).numel() == 1
    assert fg.zeros(0, 3).numel() == 0 and len(fg.zeros(4, 2)) == 4
    with pytest.raises(IndexError):
        x.size(3)
    with fg.no_grad():
        assert not (w * 2).requires_grad
