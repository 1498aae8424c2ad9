"""`DistributedDataParallel`: the same model on every rank, each on its share of the batch, kept identical by
averaging gradients across ranks after every backward (torch.nn.parallel.DistributedDataParallel).

Construction copies rank 0's parameters and buffers to every rank. When backward() has accumulated the gradient of
every parameter, the gradients are averaged over the ranks in buckets of about `bucket_cap_mb` (one MPI message per
bucket and dtype), so each rank's optimizer takes the same step: with the loss a mean over samples, that is the step
one process takes on the whole batch. Buffers (BatchNorm's running statistics) are rank 0's at every forward.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fusegrad as fg

from .. import distributed as dist
from .module import Module


class DistributedDataParallel(Module):
    """Wrap `module` for data-parallel training over the initialized process group; call it as the module."""

    def __init__(self, module: Module, device_ids: list | None = None, output_device: Any = None,  # noqa: ANN401
                 broadcast_buffers: bool = True, bucket_cap_mb: float = 25.0, find_unused_parameters: bool = False,
                 **_: Any) -> None:
        super().__init__()
        if not dist.is_initialized():
            raise RuntimeError("DistributedDataParallel: call fusegrad.distributed.init_process_group() first")
        if find_unused_parameters:
            raise NotImplementedError("DistributedDataParallel: find_unused_parameters is not supported; every "
                                      "parameter that requires grad must take part in the loss")
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        params = [p for p in module.parameters() if p.requires_grad]
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t, 0)
        self._buckets = _buckets(params, int(bucket_cap_mb * 2**20))
        self._count = len(params)
        self._ready: set[int] = set()  # ids of parameters whose gradient this backward has accumulated
        self._sync = True
        self._handles = [p.register_post_accumulate_grad_hook(self._gradient_ready) for p in params]

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        """The wrapped module's forward (after taking rank 0's buffers)."""
        if self._ready:
            raise RuntimeError(f"DistributedDataParallel: the last backward gave gradients to {len(self._ready)} of "
                               f"{self._count} parameters, so they were never averaged over the ranks; every "
                               "parameter that requires grad must take part in the loss")
        if self.broadcast_buffers:
            for b in self.module.buffers():
                dist.broadcast(b, 0)
        return self.module(*args, **kwargs)

    @contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes in this block accumulate gradients on this rank only; the first backward after it
        averages everything accumulated (gradient accumulation with one all-reduce)."""
        before, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = before

    def _gradient_ready(self, param: fg.Tensor) -> None:
        if not self._sync:
            return
        self._ready.add(id(param))
        if len(self._ready) == self._count:
            self._ready.clear()
            self._average_gradients()

    def _average_gradients(self) -> None:
        for bucket in self._buckets:
            try:
                grads = [p.grad.numpy() for p in bucket]
            except fg.JitError as e:
                raise fg.JitError("DistributedDataParallel: gradients are averaged over the ranks by MPI on the "
                                  "host, which a jitted step cannot replay; run the training step without fg.jit") \
                    from e
            for p, g in zip(bucket, dist.all_reduce_arrays(grads, dist.ReduceOp.AVG)):
                p.grad = fg.tensor(g, dtype=p.grad.dtype, device=p.device)


def _buckets(params: list[fg.Tensor], cap_bytes: int) -> list[list[fg.Tensor]]:
    """Consecutive parameters in groups of at most `cap_bytes` (a larger parameter is a group of its own)."""
    buckets: list[list[fg.Tensor]] = []
    size = cap_bytes
    for p in params:
        nbytes = p.numel() * p.dtype.itemsize
        if size + nbytes > cap_bytes:
            buckets.append([])
            size = 0
        buckets[-1].append(p)
        size += nbytes
    return buckets
