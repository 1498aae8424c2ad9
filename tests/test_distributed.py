"""fusegrad.distributed over MPI (`mpiexec -n 2`, MPICH from pip): collectives give every rank the combined tensors,
DistributedDataParallel keeps ranks identical and trains exactly as one process on the whole batch (gradient
accumulation under no_sync included), and DistributedSampler deals a dataset out as torch's does."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fusegrad as fg
import fusegrad.distributed as dist
from fusegrad import nn, optim


def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"  # the mpich wheel puts it next to the interpreter
    return str(beside) if beside.exists() else shutil.which("mpiexec")


needs_mpi = pytest.mark.skipif(not dist.is_available() or _mpiexec() is None,
                               reason='MPI is not installed here (pip install "fusegrad[distributed]")')


def _run_ranks(tmp_path: Path, script: str, n: int = 2) -> list[dict]:
    """Run `script` on n MPI ranks; each writes its results as JSON to OUT/rank<r>.json."""
    path = tmp_path / "script.py"
    path.write_text(script)
    result = subprocess.run([_mpiexec(), "-n", str(n), sys.executable, str(path), str(tmp_path)],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(n)]


PRELUDE = """
import json, os, sys
import numpy as np
import fusegrad as fg
import fusegrad.distributed as dist
from fusegrad import nn, optim
dist.init_process_group("mpi")
rank, size = dist.get_rank(), dist.get_world_size()
out = {}
def finish():
    path = os.path.join(sys.argv[1], f"rank{rank}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(out, f)
    os.replace(path + ".tmp", path)
"""

COLLECTIVES = PRELUDE + """
out["rank"], out["size"] = rank, size
t = fg.tensor([rank + 1.0, 10.0 * rank])
dist.all_reduce(t)
out["sum"] = t.tolist()
i = fg.tensor([[rank, 1], [2, rank]])
dist.all_reduce(i, op=dist.ReduceOp.MAX)
out["max_int"] = i.tolist()
b = fg.tensor([rank == 0, True, False])
dist.all_reduce(b)
out["any_bool"] = b.tolist()
a = fg.tensor([2.0 + rank])
dist.all_reduce(a, op=dist.ReduceOp.AVG)
out["avg"] = a.tolist()
p = fg.tensor([3.0 + rank])
dist.all_reduce(p, op=dist.ReduceOp.PRODUCT)
out["product"] = p.tolist()
s = fg.full((2, 2), float(rank))
dist.broadcast(s, src=1)
out["broadcast"] = s.tolist()
parts = [fg.zeros(3) for _ in range(size)]
dist.all_gather(parts, fg.arange(3.0) + rank)
out["gathered"] = [x.tolist() for x in parts]
try:
    dist.all_reduce(fg.zeros(2 + rank))
except ValueError as e:
    out["mismatch"] = str(e)
try:
    dist.all_reduce(fg.tensor([1, 2]), op=dist.ReduceOp.AVG)
except TypeError as e:
    out["avg_int"] = str(e)
dist.barrier()
finish()
"""


@needs_mpi
def test_collectives_combine_every_ranks_tensor(tmp_path: Path) -> None:
    r0, r1 = _run_ranks(tmp_path, COLLECTIVES)
    assert (r0["rank"], r1["rank"], r0["size"]) == (0, 1, 2)
    for r in (r0, r1):
        assert r["sum"] == [3.0, 10.0]
        assert r["max_int"] == [[1, 1], [2, 1]]
        assert r["any_bool"] == [True, True, False]
        assert r["avg"] == [2.5] and r["product"] == [12.0]
        assert r["broadcast"] == [[1.0, 1.0], [1.0, 1.0]]
        assert r["gathered"] == [[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]]
        assert "ranks passed different tensors" in r["mismatch"]
        assert "AVG needs floating tensors" in r["avg_int"]


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def _batches() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    return [(rng.standard_normal((8, 6)).astype(np.float32), rng.integers(0, 3, 8)) for _ in range(6)]


DDP_TRAINING = PRELUDE + """
fg.manual_seed(100 + rank)  # different initial weights: DistributedDataParallel starts every rank from rank 0's
torch_like = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
if rank == 0:
    torch_like.load_state_dict({k: fg.tensor(np.asarray(v, np.float32))
                                for k, v in json.load(open(os.path.join(sys.argv[1], "init.json"))).items()})
model = nn.parallel.DistributedDataParallel(torch_like)
opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
rng = np.random.default_rng(7)
batches = [(rng.standard_normal((8, 6)).astype(np.float32), rng.integers(0, 3, 8)) for _ in range(6)]
losses = []
for step, (x, y) in enumerate(batches):
    x, y = fg.tensor(x[rank::size]), fg.tensor(y[rank::size])  # this rank's half of the batch
    opt.zero_grad()
    if step % 2:  # gradient accumulation: two micro-batches of 2, averaged over ranks once, at the second
        with model.no_sync():
            (nn.functional.cross_entropy(model(x[:2]), y[:2]) / 2).backward()
        (nn.functional.cross_entropy(model(x[2:]), y[2:]) / 2).backward()
    else:
        nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
out["weights"] = {k: v.tolist() for k, v in model.state_dict().items()}
finish()
"""


@needs_mpi
def test_data_parallel_training_equals_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    fg.manual_seed(0)
    model = _mlp()
    (tmp_path / "init.json").write_text(json.dumps({k: v.tolist() for k, v in model.state_dict().items()}))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in _batches():  # one process, whole batches (a micro-batch split of a mean loss changes nothing)
        opt.zero_grad()
        nn.functional.cross_entropy(model(fg.tensor(x)), fg.tensor(y)).backward()
        opt.step()
    r0, r1 = _run_ranks(tmp_path, DDP_TRAINING)
    assert r0["weights"] == r1["weights"]  # ranks stay bit-identical
    assert sorted(r0["weights"]) == [f"module.{k}" for k in sorted(model.state_dict())]
    for key, value in model.state_dict().items():
        np.testing.assert_allclose(np.asarray(r0["weights"][f"module.{key}"]), value.numpy(), rtol=1e-4,
                                   atol=1e-5, err_msg=key)


DDP_ERRORS = PRELUDE + """
class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)
    def forward(self, x):
        return self.a(x)
model = nn.parallel.DistributedDataParallel(TwoHeads())
model(fg.ones(1, 2)).sum().backward()
try:
    model(fg.ones(1, 2))
except RuntimeError as e:
    out["unused"] = str(e)
model = nn.parallel.DistributedDataParallel(nn.Linear(2, 1))
step = fg.jit(lambda x: model(x).sum().backward())
try:
    step(fg.ones(1, 2))
    step(fg.ones(1, 2))
except fg.JitError as e:
    out["jit"] = str(e)
finish()
"""


@needs_mpi
def test_what_data_parallel_cannot_do_is_a_clear_error(tmp_path: Path) -> None:
    for r in _run_ranks(tmp_path, DDP_ERRORS):
        assert "gradients to 2 of 4 parameters" in r["unused"]
        assert "run the training step without fg.jit" in r["jit"]


def test_without_a_process_group_everything_says_what_to_call_first() -> None:
    for call in (dist.get_rank, dist.get_world_size, dist.barrier, lambda: dist.all_reduce(fg.zeros(1)),
                 lambda: nn.parallel.DistributedDataParallel(_mlp())):
        with pytest.raises(RuntimeError, match="init_process_group"):
            call()
    with pytest.raises(ValueError, match="backend='mpi'"):
        dist.init_process_group("nccl")
    assert not dist.is_initialized()


@pytest.mark.parametrize("n, replicas, drop_last", [(10, 3, False), (10, 3, True), (2, 4, False), (12, 4, False),
                                                    (0, 2, False)])
def test_distributed_sampler_deals_indices_like_torch(n: int, replicas: int, drop_last: bool) -> None:
    import torch.utils.data as tud
    for rank in range(replicas):
        ours = fg.data.DistributedSampler(range(n), replicas, rank, shuffle=False, drop_last=drop_last)
        theirs = tud.DistributedSampler(range(n), replicas, rank, shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)


def test_distributed_sampler_shuffles_the_same_on_every_rank_and_anew_each_epoch() -> None:
    samplers = [fg.data.DistributedSampler(range(20), 4, r, seed=3) for r in range(4)]
    first = [list(s) for s in samplers]
    assert sorted(i for part in first for i in part) == list(range(20))
    for s in samplers:
        s.set_epoch(1)
    second = [list(s) for s in samplers]
    assert sorted(i for part in second for i in part) == list(range(20)) and second != first
    assert [list(s) for s in samplers] == second  # an epoch's order is fixed by seed + epoch
    with pytest.raises(ValueError, match="rank 4 is not in"):
        fg.data.DistributedSampler(range(5), 4, 4)


def test_a_data_loader_takes_its_order_from_a_sampler() -> None:
    data = fg.data.TensorDataset(fg.arange(10))
    sampler = fg.data.DistributedSampler(data, 2, 1, shuffle=False)
    loader = fg.data.DataLoader(data, batch_size=2, sampler=sampler)
    assert len(loader) == 3 and [b[0].tolist() for b in loader] == [[1, 3], [5, 7], [9]]
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        fg.data.DataLoader(data, sampler=sampler, shuffle=True)


def test_post_accumulate_grad_hooks_run_after_backward_like_torch() -> None:
    import torch
    seen, seen_torch = [], []
    w, wt = fg.tensor([1.0, 2.0], requires_grad=True), torch.tensor([1.0, 2.0], requires_grad=True)
    handle = w.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.tolist()))
    handle_t = wt.register_post_accumulate_grad_hook(lambda p: seen_torch.append(p.grad.tolist()))
    for x, xt in ((w, wt), (w * 3, wt * 3)):
        (x * x).sum().backward()
        (xt * xt).sum().backward()
    handle.remove()
    handle_t.remove()
    (w * 1).sum().backward()
    (wt * 1).sum().backward()
    assert seen == seen_torch and w.grad.tolist() == wt.grad.tolist()
    with pytest.raises(RuntimeError, match="only leaf tensors"):
        (w * 2).register_post_accumulate_grad_hook(print)


@needs_mpi
def test_the_data_parallel_mnist_example_learns() -> None:
    result = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-m", "fusegrad.examples.mnist_ddp"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if "test accuracy" in line]
    assert len(lines) == 1 and "on 2 ranks" in lines[0]  # rank 0 reports, once per epoch
    assert float(lines[0].split("test accuracy ")[1].split("%")[0]) > 93, lines[0]
