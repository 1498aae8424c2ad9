"""The `cuda` device's host code, driven through a stand-in for the CUDA driver API that records every call (no GPU
needed): what Python can get wrong before a GPU ever runs it. Kernels do not run, so values are not checked here:
the device-parametrized suite checks them wherever a GPU is present.

Checked: a jitted step on `cuda` records its commands once as a CUDA graph (stream capture on the device's stream),
replays it with one `cuGraphLaunch` and no kernel launches, and gives each replay's random kernels a new counter
through `cuGraphExecKernelNodeSetParams` on the node the capture reported for them; `FUSEGRAD_CUDA_GRAPHS=0` launches
kernel by kernel.
"""
from __future__ import annotations

import ctypes
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import fusegrad as fg
from fusegrad import nn, optim
from fusegrad.runtime import device as registry
from fusegrad.runtime.cuda import CudaDevice
from fusegrad.runtime.gpu_device import GpuDevice


class KernelNodeParams(SimpleNamespace):
    """cuda-bindings' CUDA_KERNEL_NODE_PARAMS, as far as the device sets it."""


class RecordingDriver:
    """Answers like cuda-bindings' driver module, (CUDA_SUCCESS, *values), and records (name, args) per call."""

    CUstreamCaptureMode = SimpleNamespace(CU_STREAM_CAPTURE_MODE_THREAD_LOCAL=1)
    CUresult = SimpleNamespace(CUDA_ERROR_OUT_OF_MEMORY=2)
    CUDA_KERNEL_NODE_PARAMS = KernelNodeParams

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []
        self.captured = 0  # nodes added to the graph being captured
        self.capturing = False
        self.next_address = 1 << 20
        self.parameter_counts: dict[str, int] = {}  # function -> how many kernelParams it takes

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - any driver call not special-cased below
        def call(*args: Any) -> tuple:
            self.calls.append((name, args))
            return (0,)
        return call

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    def cuMemAlloc(self, nbytes: int) -> tuple:  # noqa: N802 - the driver's names
        self._record("cuMemAlloc", nbytes)
        self.next_address += (nbytes + 255) // 256 * 256
        return 0, self.next_address

    def cuMemcpyDtoHAsync(self, host: int, src: int, nbytes: int, stream: Any) -> tuple:  # noqa: N802, ANN401
        self._record("cuMemcpyDtoHAsync", host, src, nbytes)
        ctypes.memset(host, 0, nbytes)  # zeros: no gather error, finite losses
        return (0,)

    def cuLaunchKernel(self, fn: Any, gx: int, gy: int, gz: int, bx: int, by: int, bz: int,  # noqa: N802, ANN401
                       shared: int, stream: Any, params: int, extra: int) -> tuple:  # noqa: ANN401
        self._record("cuLaunchKernel", fn, gx, bx, stream)
        self.captured += self.capturing
        return (0,)

    def cuStreamBeginCapture(self, stream: Any, mode: int) -> tuple:  # noqa: N802, ANN401
        self._record("cuStreamBeginCapture", stream, mode)
        self.capturing, self.captured = True, 0
        return (0,)

    def cuStreamGetCaptureInfo(self, stream: Any) -> tuple:  # noqa: N802, ANN401
        # CUDA 13: status, id, graph, dependencies, edge data, count; the dependency is the node captured last
        return 0, 1, 42, "graph", [f"node{self.captured}"], [], 1

    def cuStreamEndCapture(self, stream: Any) -> tuple:  # noqa: N802, ANN401
        self._record("cuStreamEndCapture", stream)
        self.capturing = False
        return 0, "graph"

    def cuGraphInstantiate(self, graph: Any, flags: int) -> tuple:  # noqa: N802, ANN401
        self._record("cuGraphInstantiate", graph, flags)
        return 0, "exec"

    def cuGraphExecKernelNodeSetParams(self, exec_: Any, node: Any, params: KernelNodeParams) -> tuple:  # noqa: N802, ANN401
        # the driver copies the parameter values during the call: read them now, as it would
        values = None
        count = self.parameter_counts.get(params.func)  # known once the test has said it
        if count:
            pointers = np.ctypeslib.as_array(ctypes.cast(params.kernelParams, ctypes.POINTER(ctypes.c_uint64)),
                                             (count,))
            values = [ctypes.c_int64.from_address(int(p)).value for p in pointers]
        self._record("cuGraphExecKernelNodeSetParams", exec_, node, params.func, params.gridDimX, values)
        return (0,)

    def names(self, start: int = 0) -> list[str]:
        return [name for name, _ in self.calls[start:]]


class FakeCublas:
    def __init__(self, driver: RecordingDriver):
        self.driver = driver

    def gemm(self, plan: Any, dtype: Any, a: int, b: int, c: int) -> None:  # noqa: ANN401
        self.driver._record("cublasGemmStridedBatchedEx", plan, a, b, c)


@pytest.fixture
def driver(monkeypatch: pytest.MonkeyPatch) -> RecordingDriver:
    """A `cuda` device over the recording driver, registered in place of any real one for this test."""
    cu = RecordingDriver()
    dev = CudaDevice.__new__(CudaDevice)
    dev.cu, dev.context, dev.stream, dev.stream_handle = cu, "ctx", "stream", 7
    dev.capability, dev.sms, dev.modules, dev.capturing = 90, 132, [], None
    GpuDevice.__init__(dev)
    dev._cublas = FakeCublas(cu)
    dev._build = lambda sources: {name: f"function {name}" for name in sources}  # no NVRTC: names stand in
    monkeypatch.setitem(registry._FACTORIES, "cuda", lambda: dev)
    monkeypatch.setitem(registry._INSTANCES, "cuda", dev)
    return cu


def _step_and_batches() -> tuple[Any, list]:
    fg.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8, device="cuda"), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3, device="cuda"))
    opt = optim.SGD(model.parameters(), lr=0.1)

    @fg.jit
    def step(x: fg.Tensor, y: fg.Tensor) -> fg.Tensor:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    rng = np.random.default_rng(0)
    batches = [(fg.tensor(rng.standard_normal((4, 6)).astype(np.float32), device="cuda"),
                fg.tensor(rng.integers(0, 3, 4), device="cuda")) for _ in range(5)]
    return step, batches


def test_a_jitted_step_is_recorded_once_and_replayed_as_one_graph(driver: RecordingDriver) -> None:
    step, batches = _step_and_batches()
    step(*batches[0]).item()  # eager
    step(*batches[1]).item()  # captured: runs its fixed commands kernel by kernel (making cuBLAS's handle etc.)
    assert "cuStreamBeginCapture" not in driver.names()
    program = step.last.program
    start = len(driver.calls)
    step(*batches[2]).item()  # checked, then recorded and launched
    recorded = driver.names(start)
    begin, end = recorded.index("cuStreamBeginCapture"), recorded.index("cuStreamEndCapture")
    assert recorded.count("cuStreamBeginCapture") == 1 and begin < end
    launches = recorded[begin:end].count("cuLaunchKernel")
    assert launches >= 5 and "cublasGemmStridedBatchedEx" in recorded[begin:end]
    assert recorded[end + 1] == "cuGraphInstantiate" and recorded.count("cuGraphLaunch") == 1
    assert "cuLaunchKernel" not in recorded[end:] and "cuMemAlloc" not in recorded[begin:]
    on_stream = {"cuStreamBeginCapture": 0, "cuStreamEndCapture": 0, "cuGraphLaunch": 1}  # the stream's position
    assert all(args[on_stream[name]] == "stream" for name, args in driver.calls[start:] if name in on_stream)
    # each kernel drawing dropout's numbers is updated through the node captured right after its launch, and its
    # counter moves every replay
    rand = program.rand_slots
    assert rand and all(program.graph.nodes[id(launch)].startswith("node") for launch, *_ in rand)
    for launch, *_ in rand:  # output, inputs, error flag, launch arguments
        driver.parameter_counts[f"function {launch.name}"] = (1 + len(launch.inputs) + launch.kernel.uses_error_flag
                                                               + len(launch.args))
    offsets = []
    for x, y in batches[3:]:
        start = len(driver.calls)
        step(x, y).item()
        replay = driver.calls[start:]
        assert [n for n, _ in replay][0] == "cuCtxSetCurrent"  # a replay binds the context, as a realize does
        assert [n for n, _ in replay].count("cuGraphLaunch") == 1
        assert not any(n in ("cuLaunchKernel", "cuStreamBeginCapture", "cuMemAlloc") for n, _ in replay)
        updates = [args for n, args in replay if n == "cuGraphExecKernelNodeSetParams"]
        assert len(updates) == len(rand)
        for (launch, _, offset_slot, _), (_, node, func, blocks, values) in zip(rand, updates):
            assert node == program.graph.nodes[id(launch)] and func == f"function {launch.name}" and blocks >= 1
            assert int(launch.args[offset_slot]) in values  # the new counter is among the values passed
        offsets.append([int(launch.args[slot]) for launch, _, slot, _ in rand])
    assert all(b > a for a, b in zip(offsets[0], offsets[1]))  # each call draws new numbers


def test_graphs_switched_off_launch_kernel_by_kernel(driver: RecordingDriver,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSEGRAD_CUDA_GRAPHS", "0")
    step, batches = _step_and_batches()
    for x, y in batches[:3]:
        step(x, y).item()
    start = len(driver.calls)
    step(*batches[3]).item()
    names = driver.names(start)
    assert step.last.program.graph is None and "cuStreamBeginCapture" not in names and "cuGraphLaunch" not in names
    assert names.count("cuLaunchKernel") >= 5 and "cuMemAlloc" not in names


def test_a_failure_while_recording_ends_the_capture(driver: RecordingDriver) -> None:
    dev = registry._INSTANCES["cuda"]

    def failing() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        dev.record(failing, [])
    assert driver.names()[-2:] == ["cuStreamEndCapture", "cuGraphDestroy"] and dev.capturing is None
