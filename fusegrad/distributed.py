"""`fusegrad.distributed`: processes that train one model together over MPI, with torch.distributed's names.

```python
import fusegrad.distributed as dist
dist.init_process_group("mpi")          # started as `mpiexec -n 4 python train.py`
model = fg.nn.parallel.DistributedDataParallel(model)
```

Collectives run on the host through `mpi4py` (`pip install "fusegrad[distributed]"`, which brings MPICH too): a
tensor is realized, its values travel as one contiguous NumPy buffer, and the result is written back into the
tensor in place (so it keeps its identity: parameters stay parameters). Every rank must call each collective in the
same order with tensors of the same shape and dtype; a mismatch is an error here, before MPI sees it.
"""
from __future__ import annotations

import enum
import importlib.util
from collections.abc import Sequence
from typing import Any

import numpy as np

import fusegrad as fg

__all__ = ["ReduceOp", "all_gather", "all_reduce", "all_reduce_arrays", "barrier", "broadcast", "destroy_process_group",
           "get_rank", "get_world_size", "init_process_group", "is_available", "is_initialized"]


class ReduceOp(enum.Enum):
    """How all_reduce combines the ranks' tensors."""

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"


# the MPI operation for numbers and for bools (sent as bytes) of each ReduceOp
_MPI_OPS = {ReduceOp.SUM: ("SUM", "BOR"), ReduceOp.AVG: ("SUM", "BOR"), ReduceOp.PRODUCT: ("PROD", "BAND"),
            ReduceOp.MIN: ("MIN", "BAND"), ReduceOp.MAX: ("MAX", "BOR")}
_group: dict[str, Any] = {}  # "comm": the MPI communicator of the initialized process group


def is_available() -> bool:
    """True when mpi4py is installed (found, not imported: importing it starts MPI)."""
    return importlib.util.find_spec("mpi4py") is not None


def init_process_group(backend: str = "mpi", *, world_size: int = -1, rank: int = -1, **_: Any) -> None:
    """Join every process `mpiexec` started (`backend` must be "mpi"; rank and size come from MPI, and a
    `world_size` or `rank` given must agree with them). Run without mpiexec, the group is this one process."""
    if backend != "mpi":
        raise ValueError(f"init_process_group: fusegrad's processes talk over MPI only: backend='mpi', "
                         f"got {backend!r}")
    if _group:
        raise RuntimeError("init_process_group: the default process group is already initialized")
    try:
        from mpi4py import MPI
    except ImportError as e:  # no mpi4py, or no MPI library for it to load
        raise RuntimeError(f'init_process_group: MPI is not usable here ({e}): pip install "fusegrad[distributed]"') \
            from e
    comm = MPI.COMM_WORLD
    for name, given, actual in (("world_size", world_size, comm.Get_size()), ("rank", rank, comm.Get_rank())):
        if given not in (-1, actual):
            raise ValueError(f"init_process_group: {name}={given}, but MPI started this process with {name} {actual}")
    _group["comm"] = comm


def is_initialized() -> bool:
    """Whether init_process_group has run (and destroy_process_group has not)."""
    return bool(_group)


def destroy_process_group() -> None:
    """Leave the process group (MPI itself finalizes at exit)."""
    _comm("destroy_process_group")
    _group.clear()


def _comm(what: str) -> Any:  # noqa: ANN401 - an mpi4py communicator
    if not _group:
        raise RuntimeError(f"{what}: call fusegrad.distributed.init_process_group() first")
    return _group["comm"]


def get_rank() -> int:
    """This process's rank, 0 .. world_size - 1."""
    return _comm("get_rank").Get_rank()


def get_world_size() -> int:
    """How many processes are in the group."""
    return _comm("get_world_size").Get_size()


def barrier() -> None:
    """Wait until every rank gets here."""
    _comm("barrier").Barrier()


def _host(tensor: fg.Tensor, what: str) -> np.ndarray:
    if not isinstance(tensor, fg.Tensor):
        raise TypeError(f"{what}: expected a Tensor, got {type(tensor).__name__}")
    return np.ascontiguousarray(tensor.detach().numpy())


def _agree(comm: Any, what: str, signature: tuple) -> None:  # noqa: ANN401
    """Every rank passed tensors of the same shapes and dtypes (else MPI would mix up bytes or hang)."""
    signatures = comm.allgather(signature)
    if any(s != signature for s in signatures):
        raise ValueError(f"{what}: ranks passed different tensors: {dict(enumerate(signatures))}")


def _write(tensor: fg.Tensor, values: np.ndarray) -> None:
    """Put values into tensor in place, on its device and in its dtype, off the autograd tape."""
    with fg.no_grad():
        tensor.copy_(fg.tensor(values, dtype=tensor.dtype, device=tensor.device))


def all_reduce_arrays(arrays: Sequence[np.ndarray], op: ReduceOp = ReduceOp.SUM) -> list[np.ndarray]:
    """Combine same-shaped host arrays across ranks, all in one message per dtype (gradient buckets)."""
    from mpi4py import MPI
    comm = _comm("all_reduce")
    _agree(comm, "all_reduce", tuple((a.shape, a.dtype.str) for a in arrays) + (op.value,))
    if op is ReduceOp.AVG and any(not np.issubdtype(a.dtype, np.floating) for a in arrays):
        raise TypeError(f"all_reduce: ReduceOp.AVG needs floating tensors, got {[str(a.dtype) for a in arrays]}")
    out: list[np.ndarray] = [np.empty(0)] * len(arrays)
    for dtype in dict.fromkeys(a.dtype for a in arrays):
        members = [i for i, a in enumerate(arrays) if a.dtype == dtype]
        flat = np.concatenate([arrays[i].reshape(-1) for i in members])
        numbers, booleans = _MPI_OPS[op]
        if dtype == np.bool_:  # MPI has no bool sum: bools travel as bytes, combined by "or" / "and"
            flat = flat.view(np.uint8)
        comm.Allreduce(MPI.IN_PLACE, flat, op=getattr(MPI, booleans if dtype == np.bool_ else numbers))
        if op is ReduceOp.AVG:
            flat /= comm.Get_size()
        flat = flat.view(dtype)
        start = 0
        for i in members:
            out[i] = flat[start:start + arrays[i].size].reshape(arrays[i].shape)
            start += arrays[i].size
    return out


def all_reduce(tensor: fg.Tensor, op: ReduceOp = ReduceOp.SUM, group: None = None, async_op: bool = False) -> None:
    """Replace `tensor` on every rank by the sum (or op) of every rank's `tensor`, in place."""
    if group is not None or async_op:
        raise NotImplementedError("all_reduce: only the default group, synchronously")
    if not isinstance(op, ReduceOp):
        raise TypeError(f"all_reduce: op must be a fusegrad.distributed.ReduceOp, got {op!r}")
    _write(tensor, all_reduce_arrays([_host(tensor, "all_reduce")], op)[0])


def broadcast(tensor: fg.Tensor, src: int = 0, group: None = None, async_op: bool = False) -> None:
    """Replace `tensor` on every rank by rank `src`'s `tensor`, in place."""
    if group is not None or async_op:
        raise NotImplementedError("broadcast: only the default group, synchronously")
    comm = _comm("broadcast")
    if not 0 <= src < comm.Get_size():
        raise ValueError(f"broadcast: src={src} is not a rank of a group of {comm.Get_size()}")
    values = _host(tensor, "broadcast")
    _agree(comm, "broadcast", (values.shape, values.dtype.str, src))
    comm.Bcast(values.view(np.uint8) if values.dtype == np.bool_ else values, root=src)
    _write(tensor, values)


def all_gather(tensor_list: list[fg.Tensor], tensor: fg.Tensor, group: None = None, async_op: bool = False) -> None:
    """Fill `tensor_list[r]` (in place) with rank r's `tensor`, on every rank."""
    if group is not None or async_op:
        raise NotImplementedError("all_gather: only the default group, synchronously")
    comm = _comm("all_gather")
    if len(tensor_list) != comm.Get_size():
        raise ValueError(f"all_gather: tensor_list has {len(tensor_list)} tensors for {comm.Get_size()} ranks")
    values = _host(tensor, "all_gather")
    for t in tensor_list:
        if tuple(t.shape) != values.shape or t.dtype != tensor.dtype:
            raise ValueError(f"all_gather: every output must be like the input ({values.shape}, {tensor.dtype}), "
                             f"got {tuple(t.shape)}, {t.dtype}")
    _agree(comm, "all_gather", (values.shape, values.dtype.str))
    gathered = np.empty((comm.Get_size(), *values.shape), values.dtype)
    raw = (lambda a: a.view(np.uint8)) if values.dtype == np.bool_ else (lambda a: a)
    comm.Allgather(raw(values), raw(gathered))
    for t, v in zip(tensor_list, gathered):
        _write(t, v)
