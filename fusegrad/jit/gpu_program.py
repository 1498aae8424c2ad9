"""A captured step on an accelerator (`opencl`, `cuda`): a fixed list of enqueued commands over memory placed once.

The step is scheduled, lowered and compiled at capture exactly as eager mode would run it (`GpuDevice.plan`), and
every value gets fixed memory: each input a static slot (the caller's buffer is copied in when it is a new one), each
state (parameter, optimizer state, gradient) a persistent buffer, and every intermediate a place in one arena,
planned from lifetimes (`plan_arena`) so that buffers not alive together share bytes. A state's new value is
computed straight into its persistent buffer where that is safe, else copied there after the last command that
reads the old value. A replay sets the random seeds and
enqueues the list: no scheduling, lowering, compiling or allocation. On `cuda` the list is recorded once as a CUDA
graph, and a replay is one graph launch.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..codegen import ir
from ..graph import Node, Op, prod, source_node
from ..runtime.device import Buffer, debug_level
from ..runtime.gpu_device import DeviceArray, GpuDevice, Launch, operand_view
from ..schedule import ScheduleItem, schedule_kernels
from .cpu_program import UnsupportedStepError
from .memory_plan import Lifetime, MemoryPlan, plan_arena
from .profile import StepProfile
from .trace import Captured

ARENA_ALIGN = 256  # bytes: the start of every planned buffer (coalesced loads on GPUs; a multiple of OpenCL's)

# where a value lives: a fixed buffer (an input slot, a state) or an arena key, and a byte offset into it
Place = tuple[DeviceArray | int, int]


def _nbytes(node: Node) -> int:
    return prod(node.shape) * node.dtype.itemsize


class GpuProgram:
    """A whole captured step as fixed commands on one GpuDevice; `run` binds the inputs and enqueues them."""

    def __init__(self, captured: Captured, device: GpuDevice):
        self.captured, self.device = captured, device
        roots, inputs = captured.roots, captured.inputs
        for n in roots + inputs:
            if n.op in (Op.COPY, Op.ASSIGN) and n.buffer is None:
                raise UnsupportedStepError(f"{n.op.name} inside a captured step")
        items = schedule_kernels(roots)
        boundary = {id(item.out) for item in items}
        steps = [step for item in items for step in device.plan(item, boundary)]
        device.compile([s for s in steps if isinstance(s, Launch)])
        self.states = [device.alloc(_nbytes(s.final)) for s, _ in captured.states]
        self.slots = [self.states[src] if kind == "state" else device.alloc(_nbytes(n))
                      for n, (kind, src) in zip(inputs, captured.sources)]
        self.bound: list[DeviceArray | None] = [None] * len(inputs)  # the caller's buffer last copied into a slot
        self.place: dict[int, Place] = {id(n): (slot, 0) for n, slot in zip(inputs, self.slots)}
        self.sizes: dict[int, int] = {}  # arena key -> bytes
        self.lifetimes: dict[int, list[int]] = {}  # arena key -> [first step, last step]
        self.work: list[tuple[str, Any]] = []  # what each step enqueues, in terms of nodes (placed in _place_steps)
        self.written: dict[int, int] = {}  # id(node) -> the step that computes it into its own buffer
        self.last_fixed_read: dict[int, int] = {}  # id(input slot or state buffer) -> the last step reading it
        self._place_steps(steps)
        self._plan_arena(end=len(steps))
        self._make_commands()
        self.runs = 0
        self.graph: Any = None  # the device's recording of the commands (a CUDA graph), from the second run on
        # DEBUG=2: each command is timed, waiting for the device after it (so no recording, which runs as a whole)
        self.profile = StepProfile(self.command_names, np.zeros(len(self.commands))) if debug_level() >= 2 else None

    # ---- memory ----

    def _new(self, node: Node, j: int) -> None:
        """`node` gets its own arena buffer, written at step j."""
        self.place[id(node)] = (id(node), 0)
        self.sizes[id(node)] = max(_nbytes(node), 1)
        self.lifetimes[id(node)] = [j, j]
        self.written[id(node)] = j

    def _read(self, node: Node, j: int) -> None:
        base, _ = self.place[id(node)]
        if isinstance(base, int):
            self.lifetimes[base][1] = j
        else:
            self.last_fixed_read[id(base)] = j

    def _place_steps(self, steps: list[Launch | ScheduleItem]) -> None:
        """Give every value a place, in step order, extending lifetimes over the reads."""
        ready: set[int] = set()
        for j, step in enumerate(steps):
            if isinstance(step, Launch):
                for n in step.inputs:
                    self._read(n, j)
                self._new(step.value, j)
                self.place[id(step.target)] = self.place[id(step.value)]
                self.work.append(("launch", step))
                ready |= {id(step.value), id(step.target)}
                continue
            out = step.out
            if step.kind == "view":
                src = step.inputs[0]
                base, offset = self.place[id(src)]
                offset += step.offset * out.dtype.itemsize  # the scheduler's: where the block starts in src
                self._read(src, j)
                if offset % self.device.region_align == 0:  # shared memory
                    self.place[id(out)] = (base, offset)
                else:  # the device cannot start a kernel argument there: a copy
                    self._new(out, j)
                    self.work.append(("copy", (out, src, offset - self.place[id(src)][1])))
            else:  # a library MATMUL
                operands = [operand_view(s, ready) for s in out.srcs]
                for base_node, _ in operands:
                    self._read(base_node, j)
                self._new(out, j)
                self.work.append(("matmul", (out, operands)))
            ready.add(id(out))

    def _write_in_place(self) -> None:
        """Compute a state's new value straight into its persistent buffer where nothing reads the old value later
        (a kernel computing it may read it, at the element it writes only), instead of copying it there at the end."""
        steps = {id(step.value): step for kind, step in self.work if kind == "launch" and step.value is step.target}
        steps.update({id(step[0]): None for kind, step in self.work if kind == "matmul"})  # BLAS: no overlap at all
        for k, (s, _) in enumerate(self.captured.states):
            (key, offset), mem = self.place[id(s.final)], self.states[k]
            # the value, or a reshape of one, that a step computed into an arena buffer of its own and exactly its size
            if key not in steps or offset or self.sizes[key] != max(_nbytes(s.final), 1):
                continue
            j, last = self.written[key], self.last_fixed_read.get(id(mem), -1)
            launch = steps[key]
            if last > j or last == j and (launch is None or not self._reads_only_in_place(launch, mem)):
                continue
            for n_id, (base, offset) in list(self.place.items()):  # the value and every view sharing its memory
                if base == key:
                    self.place[n_id] = (mem, offset)
            del self.lifetimes[key], self.sizes[key]

    def _reads_only_in_place(self, launch: Launch, mem: DeviceArray) -> bool:
        """True if `launch` reads the buffer `mem` only as whole operands laid out like its output, each at the
        element it writes."""
        names = set()
        for i, n in enumerate(launch.inputs):
            base, offset = self.place[id(n)]
            if base is mem:
                if offset or n.shape != launch.value.shape:
                    return False
                names.add(f"in{i}")
        return ir.reads_only_where_stored(launch.kernel, names)

    def _plan_arena(self, end: int) -> None:
        """Outputs live to the end, new state values until they are copied; then place the arena."""
        cap = self.captured
        self._write_in_place()
        self.final_copies = []
        for k, (s, _) in enumerate(cap.states):
            if self.place[id(s.final)] != (self.states[k], 0):
                self._read(s.final, end)
                self.final_copies.append((k, s.final))
        for r in cap.roots:
            self._read(r, end + 1)
        lifetimes = [Lifetime(key, self.sizes[key], first, last) for key, (first, last) in self.lifetimes.items()]
        self.plan: MemoryPlan = plan_arena(lifetimes, max(ARENA_ALIGN, self.device.region_align))
        self.plan.state_bytes = sum(m.nbytes for m in self.states)
        self.arena = self.device.alloc(max(self.plan.arena_bytes, 1))
        self._regions: dict[tuple[int, int, int], DeviceArray] = {}

    def _span(self, place: Place, nbytes: int) -> DeviceArray:
        """The bytes at a place, as the device's copy commands take them."""
        base, offset = place
        if isinstance(base, int):
            base, offset = self.arena, self.plan.offsets[base] + offset
        return DeviceArray(base.alloc, base.offset + offset, nbytes)

    def memory(self, node: Node) -> DeviceArray:
        """A node's memory as a kernel argument (one region object per place and size)."""
        base, offset = self.place[id(node)]
        if isinstance(base, int):
            base, offset = self.arena, self.plan.offsets[base] + offset
        key = (id(base), offset, _nbytes(node))
        if key not in self._regions:
            self._regions[key] = self.device._region(base, offset, _nbytes(node))
        return self._regions[key]

    # ---- commands ----

    def _make_commands(self) -> None:
        """Every step as a device call on fixed memory, then the copies into state; results and random seeds."""
        cap, device = self.captured, self.device
        launches = [step for kind, step in self.work if kind == "launch"]
        gathering = [launch for launch in launches if launch.kernel.uses_error_flag]
        for slot, launch in enumerate(gathering):
            launch.err_slot = slot
        self.gathering = gathering
        self.err = device.alloc(4 * len(gathering)) if gathering else None
        if self.err is not None:
            device._fill_zero(self.err)
        self.commands: list[tuple[Callable[..., None], tuple]] = []
        self.command_names: list[str] = []  # what each command computes, for the DEBUG=2 profile
        self.launch_memory: dict[int, tuple] = {}  # id(launch) -> (out, inputs, err), for a recording's updates
        for kind, step in self.work:
            if kind == "launch":
                mem = (self.memory(step.value), [self.memory(n) for n in step.inputs], self.err)
                self.launch_memory[id(step)] = mem
                if step.plan.work:
                    self.commands.append((device._launch, (step, *mem)))
                    self.command_names.append(f"kernel {step.value.op.name} {step.value.shape} {step.name}")
            elif kind == "copy":
                out, src, offset = step
                base, at = self.place[id(src)]
                if _nbytes(out):
                    self.commands.append((device._copy, (self.memory(out), self._span((base, at + offset),
                                                                                      _nbytes(out)), _nbytes(out))))
                    self.command_names.append(f"copy of a view {out.shape}")
            else:
                out, operands = step
                if _nbytes(out):
                    self.commands.append((device._matmul_into, (out, self.memory(out), *[
                        (self.memory(base_node), view) for base_node, view in operands])))
                    self.command_names.append(f"matmul {out.shape}")
        for k, node in self.final_copies:
            if _nbytes(node):
                self.commands.append((device._copy, (self.states[k], self._span(self.place[id(node)],
                                                                                 _nbytes(node)), _nbytes(node))))
                self.command_names.append(f"copy into state {node.shape}")
        self.state_nodes = [self._node(s.final, self.states[k]) for k, (s, _) in enumerate(cap.states)]
        self.results = [self._result(r) for r in cap.roots]
        rand_offsets = {(n.arg[0], n.arg[1]): off for n, off in cap.rand}
        self.rand_slots = [(launch, v.seed.slot, v.offset.slot,
                            rand_offsets[(launch.kernel.args[v.seed.slot], launch.kernel.args[v.offset.slot])])
                           for launch in launches for v in ir.walk_values(launch.kernel.body)
                           if isinstance(v, ir.Rand)]

    def _node(self, like: Node, mem: DeviceArray) -> Node:
        buf = Buffer(self.device.name, like.shape, like.dtype, mem)
        node = source_node(Op.LOAD, buf, like.shape, like.dtype, like.device)
        node.buffer = buf
        return node

    def _result(self, root: Node) -> Node:
        """The node a root's value is read from after a run: a state's own node where it is that state's buffer."""
        for k, mem in enumerate(self.states):
            if self.place[id(root)] == (mem, 0) and root.shape == self.state_nodes[k].shape:
                return self.state_nodes[k]
        return self._node(root, self.memory(root))

    def _enqueue(self) -> None:
        for fn, args in self.commands:
            fn(*args)

    def _enqueue_timed(self) -> None:
        for i, (fn, args) in enumerate(self.commands):
            start = time.perf_counter()
            fn(*args)
            self.device.synchronize()
            self.profile.seconds[i] += time.perf_counter() - start
        self.profile.runs += 1

    # ---- running ----

    def run(self, bound: list[Buffer], rng: tuple[int, int]) -> list[Node]:
        """Copy new input buffers into their slots, set the random seeds, enqueue the step, check gathers."""
        device = self.device
        device.make_current()
        arena = self.arena.alloc
        for i, buf in enumerate(bound):
            h = buf.handle
            # the same buffer as last call is already in its slot, unless it is arena memory: an output of the last
            # run fed back (h = step(h)), whose value each run replaces
            if (h is self.bound[i] and arena is not (h.alloc.parent or h.alloc)) or h is self.slots[i]:
                continue
            nbytes = _nbytes(self.captured.inputs[i])
            if nbytes:
                device._copy(self.slots[i], h, nbytes)
            self.bound[i] = h
        seed, counter = rng
        for launch, seed_slot, offset_slot, offset in self.rand_slots:
            launch.args[seed_slot] = np.int64(seed - 2**64 if seed >= 2**63 else seed)
            launch.args[offset_slot] = np.int64(counter + offset)
        if self.graph is None and self.profile is None and self.runs >= 1:  # the first run made every lazy handle
            self.graph = device.record(self._enqueue, [launch for launch, *_ in self.rand_slots])  # (cuBLAS's)
        if self.profile is not None:
            self._enqueue_timed()
        elif self.graph is not None:
            for launch, *_ in self.rand_slots:
                self.graph.set_args(launch, *self.launch_memory[id(launch)])
            self.graph.launch()
        else:
            self._enqueue()
        self.runs += 1
        if self.err is not None:
            self._raise_gather_errors()
        return self.results

    def _raise_gather_errors(self) -> None:
        flags = np.empty(len(self.gathering), np.int32)
        self.device._download(self.err, flags)
        if flags.any():
            self.device._fill_zero(self.err)
            k = int(np.flatnonzero(flags)[0])
            dim, size = self.gathering[k].kernel.gathers[flags[k] - 1]
            raise IndexError(f"index out of bounds for dim {dim} with size {size} (in a jitted step)")

    def state_value(self, k: int, results: list[Node]) -> Node:
        """The node state k holds after a run: its persistent buffer, the same node every call."""
        return self.state_nodes[k]

    def memory_plan(self) -> MemoryPlan:
        """The arena layout planned at capture."""
        return self.plan

    def kernel_profile(self) -> list[tuple[str, float]]:
        """(what, ms per run) for each command, slowest first; empty unless captured with DEBUG>=2."""
        return self.profile.table() if self.profile is not None else []
