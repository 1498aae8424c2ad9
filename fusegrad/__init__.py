"""fusegrad: PyTorch-style tensors that build a lazy, shape-checked graph, differentiated in reverse mode and run
on a device (the `numpy` reference interpreter today; compiled C, CUDA and OpenCL devices plug in behind it)."""
from .dtype import DType, bool_, float16, float32, float64, int32, int64, promote_types, uint8
from .frontend.creation import (
    arange,
    dropout,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    linspace,
    manual_seed,
    normal,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randint_like,
    randn,
    randn_like,
    tensor,
    zeros,
    zeros_like,
)
from .frontend.eval_shape import Spec, eval_shape
from .frontend.functions import FUNCTIONS, one_hot, where
from .frontend.grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .frontend.linalg import einsum
from .frontend.movement import cat, stack
from .frontend.random import (
    bernoulli,
    get_rng_state,
    initial_seed,
    multinomial,
    randperm,
    seed,
    set_rng_state,
)
from .frontend.tensor import Tensor, device, grad
from .frontend.threads import get_num_threads, set_num_threads
from .graph import ShapeError
from .realize import ShapeOnlyError
from .runtime import available_devices, default_device, set_default_device, synchronize

bool = bool_  # noqa: A001 - torch.bool
float = float32  # noqa: A001 - torch.float
double = float64
half = float16
long = int64
int = int32  # noqa: A001 - torch.int
globals().update(FUNCTIONS)
concat = concatenate = cat

from . import cuda, data, distributed, nn, optim  # noqa: E402,F401 - last: the library layer uses the names above
from .io import load, save  # noqa: E402,F401 - checkpoints (safetensors files), part of the library layer
from .jit import JitError, jit  # noqa: E402,F401 - whole-step capture and replay


def schedule(*tensors: Tensor) -> list:
    """The kernels that would compute these tensors now (ScheduleItems, inputs first); computes nothing."""
    from .schedule import schedule_kernels
    return schedule_kernels([t._node for t in tensors], row_kernels={t.device for t in tensors} == {"cpu"})


def realize(*tensors: Tensor) -> None:
    """Compute several tensors in one go."""
    if tensors:
        tensors[0].realize(*tensors[1:])


__version__ = "0.1.0"
__all__ = ["DType", "Spec", "ShapeError", "ShapeOnlyError", "Tensor", "arange", "available_devices", "bool_", "cat",
           "cuda", "default_device", "device", "dropout", "einsum", "empty", "empty_like", "enable_grad", "eval_shape",
           "eye", "float16", "float32", "float64", "from_numpy", "full", "full_like", "grad", "inference_mode", "int32",
           "int64", "is_grad_enabled", "jit", "JitError", "linspace", "manual_seed", "no_grad", "normal", "one_hot",
           "ones", "ones_like", "promote_types", "rand", "rand_like", "randint", "randint_like", "randn", "randn_like",
           "realize", "schedule", "set_default_device", "set_grad_enabled", "stack", "synchronize", "tensor", "uint8",
           "where", "zeros", "zeros_like", "bernoulli", "get_num_threads", "get_rng_state", "initial_seed",
           "multinomial", "randperm", "seed", "set_num_threads", "set_rng_state", *FUNCTIONS]
