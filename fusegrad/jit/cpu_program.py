"""A captured step on the `cpu` device as one C translation unit with one entry point, `fg_run`.

Every kernel of the step is rendered by the same `lower` + `render_c` as eager mode; `fg_run` calls them in order
with pointers into three kinds of memory: the caller's input buffers (arguments and read-only tensors, bound per
call), persistent state buffers (parameters, optimizer state, gradients: updated in place), and one arena holding
every intermediate at an offset planned at capture. MATMUL calls the CBLAS that NumPy ships (its function pointer
is passed in), so a replay is one ctypes call with no allocation.
"""
from __future__ import annotations

import ctypes
import hashlib
import os

import numpy as np

from ..codegen import ir
from ..codegen.c import C_TYPES, COMPUTE, PRELUDE, render_c
from ..codegen.lower import CPU, lower
from ..dtype import float32, float64
from ..graph import Node, Op, source_node
from ..runtime.blas import ROW_MAJOR, blas_layout, blas_threads_setter, cblas_gemm, gemm_threads
from ..runtime.compiler import compile_library
from ..runtime.cpu import _pack_args
from ..runtime.device import Buffer, debug_level
from ..schedule import ScheduleItem, schedule_kernels, strided_view
from .memory_plan import Lifetime, MemoryPlan, plan_arena
from .profile import StepProfile
from .trace import Captured

GEMM_TYPES = {float32: "fg_sgemm_t", float64: "fg_dgemm_t"}
SPLIT_K_MAX_OUTPUTS, SPLIT_K_MIN_K = 4096, 2048  # products this small and this long split k between the threads
THREADS = min(len(os.sched_getaffinity(0)), 8) if hasattr(os, "sched_getaffinity") else min(os.cpu_count() or 1, 8)
PROGRAM_PRELUDE = """#include <string.h>
typedef void (*fg_sgemm_t)(int, int, int, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                           int64_t, float, float*, int64_t);
typedef void (*fg_dgemm_t)(int, int, int, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                           int64_t, double, double*, int64_t);
typedef int (*fg_threads_t)(int);
#define FG_GEMM_THREADS(n) do { if (threads) ((fg_threads_t)threads)(n); } while (0)
"""
# DEBUG=2: every call of fg_run is timed; fg_profile returns the seconds spent in each, summed over runs
PROFILE_PRELUDE = """#include <time.h>
static double fg_now(void) { struct timespec t; timespec_get(&t, TIME_UTC); return t.tv_sec + 1e-9 * t.tv_nsec; }
"""


class UnsupportedStepError(Exception):
    """The graph has something the compiled program does not express (the jit then replays the graph instead)."""


class _Realized:
    """Marks a node as computed while the program is built, so `strided_view` can see through to it."""


_DONE = _Realized()


class CpuProgram:
    """A whole captured step compiled into one C function; `run` binds the inputs and calls it once."""

    def __init__(self, captured: Captured):
        self.captured = captured
        self.inputs = captured.inputs
        roots = captured.roots
        for n in roots + self.inputs:
            if n.op in (Op.COPY, Op.ASSIGN) and n.buffer is None:
                raise UnsupportedStepError(f"{n.op.name} inside a captured step")
        self.items = schedule_kernels(roots, row_kernels=True)
        self.kernels: dict[int, ir.Kernel] = {}  # item index -> lowered kernel
        self.where: dict[int, tuple[str, int, int]] = {}  # id(node) -> (memory kind, index, byte offset)
        self.alias: dict[int, int] = {}  # id(view result) -> id(the node whose memory it shares)
        for item in self.items:
            if item.kind == "view":
                base = id(item.inputs[0])
                self.alias[id(item.out)] = self.alias.get(base, base)
        for i, n in enumerate(self.inputs):
            self.where[id(n)] = ("in", i, 0)
        self.produced = {id(item.out) for item in self.items} | {id(n) for n in self.inputs}
        try:
            self._place_states()
            self._plan()
            self._render()
        finally:  # the traced graph's nodes go back to unrealized, whatever happened
            for item in self.items:
                item.out.buffer = None

    # ---- memory ----

    def _place_states(self) -> None:
        """Each state's new value is written straight into its persistent buffer where that is safe, else copied
        there at the end; a state's old value is read from that same buffer."""
        cap = self.captured
        self.state_arrays = [np.zeros(s.final.shape, s.final.dtype.np) for s, _ in cap.states]
        self.state_nodes = []
        for k, (s, _) in enumerate(cap.states):
            node = source_node(Op.LOAD, None, s.final.shape, s.final.dtype, s.final.device)
            node.buffer = Buffer(s.final.device, s.final.shape, s.final.dtype, self.state_arrays[k])
            self.state_nodes.append(node)
        for i, (kind, k) in enumerate(cap.sources):
            if kind == "state":
                self.where[id(self.inputs[i])] = ("state", k, 0)
        produced = {id(item.out): j for j, item in enumerate(self.items)}
        state_of = {id(self.inputs[i]): k for i, (kind, k) in enumerate(cap.sources) if kind == "state"}
        last_read: dict[int, int] = {}  # state index -> last item reading its old value (directly or via a view)
        for j, item in enumerate(self.items):
            for n in self._reads(item):
                k = state_of.get(self.alias.get(id(n), id(n)))
                if k is not None:
                    last_read[k] = j
        self.final_copies: list[tuple[int, Node]] = []
        in_place: set[int] = set()
        initial = {k: self.inputs[i] for i, (kind, k) in enumerate(cap.sources) if kind == "state"}
        for k, (s, _) in enumerate(cap.states):
            j = produced.get(id(s.final))
            kind = self.items[j].kind if j is not None else None
            ok = j is not None and id(s.final) not in in_place and (
                (kind == "kernel" and last_read.get(k, -1) <= j and
                 (k not in initial or self._reads_only_in_place(j, initial[k]))) or
                (kind == "matmul" and last_read.get(k, -1) < j))  # BLAS must not read what it writes
            if ok:
                self.where[id(s.final)] = ("state", k, 0)
                in_place.add(id(s.final))
            else:
                self.final_copies.append((k, s.final))

    def _reads(self, item: ScheduleItem) -> list[Node]:
        """The nodes whose memory an item reads: its inputs, and for MATMUL the buffers under its strided operands."""
        if item.kind != "matmul":
            return item.inputs
        out = []
        for n in item.out.srcs:
            while id(n) not in self.produced:
                n = n.srcs[0]
            out.append(n)
        return out

    def _lowered(self, j: int) -> ir.Kernel:
        if j not in self.kernels:
            self.kernels[j] = lower(self.items[j], "KERNEL", CPU)  # the nests eager `cpu` builds (cut loops, row sums)
        return self.kernels[j]

    def _reads_only_in_place(self, j: int, state_input: Node) -> bool:
        """True if kernel j reads the state buffer only at the element it writes (so it may write over it)."""
        item = self.items[j]
        names = {f"in{i}" for i, n in enumerate(item.inputs) if self.alias.get(id(n), id(n)) == id(state_input)}
        if not names:
            return True
        if any(item.inputs[int(nm[2:])] is not state_input or state_input.shape != item.out.shape for nm in names):
            return False
        return ir.reads_only_where_stored(self._lowered(j), names)

    def _plan(self) -> None:
        """Views alias their base; every other item result not in a state buffer gets an arena slot."""
        end = len(self.items)
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for j, item in enumerate(self.items):
            out = item.out
            if item.kind == "view":
                base = self.where[id(item.inputs[0])]
                self.where[id(out)] = (base[0], base[1], base[2] + item.offset * out.dtype.itemsize)
            elif id(out) not in self.where:
                self.where[id(out)] = ("arena", id(out), 0)
                first[id(out)] = j
                last[id(out)] = j
            for n in self._reads(item):
                kind, key, _ = self.where[id(n)]
                if kind == "arena":
                    last[key] = j
            out.buffer = _DONE  # so later strided_view calls see it as computed
        for r in self.captured.roots:
            w = self.where.get(id(r))
            if w is not None and w[0] == "arena":
                last[w[1]] = end
        nbytes = {id(item.out): max(item.out.dtype.itemsize * int(np.prod(item.out.shape)), 1) for item in self.items}
        self.plan: MemoryPlan = plan_arena([Lifetime(key, nbytes[key], first[key], last[key]) for key in first])
        self.plan.state_bytes = sum(a.nbytes for a in self.state_arrays)
        self.arena = np.zeros(max(self.plan.arena_bytes, 64) + 64, np.uint8)
        self.arena_base = (-self.arena.ctypes.data) % 64  # the arena starts on a cache line (passed at run time:
        # the source must not depend on where memory happens to be, or the disk cache would never hit)

    def _ptr(self, node: Node, const: bool = False) -> str:
        """C expression for the address of a node's first element."""
        kind, key, offset = self.where[id(node)]
        base = {"in": f"in[{key}]", "state": f"state[{key}]",
                "arena": f"(arena + {self.plan.offsets.get(key, 0)})"}[kind]
        qual = "const " if const else ""
        return f"(({qual}{C_TYPES[node.dtype]}*)({base} + {offset}))"

    def array_of(self, node: Node) -> np.ndarray:
        """The NumPy array over a node's memory after a run (arena or state; views included)."""
        kind, key, offset = self.where[id(node)]
        if kind == "state":
            mem = self.state_arrays[key].reshape(-1).view(np.uint8)
        elif kind == "arena":
            mem = self.arena[self.arena_base + self.plan.offsets[key]:]
        else:
            raise KeyError("inputs are the caller's")
        count = int(np.prod(node.shape))
        return mem[offset:offset + count * node.dtype.itemsize].view(node.dtype.np).reshape(node.shape)

    # ---- code ----

    def _render(self) -> None:
        functions: dict[str, str] = {}
        calls: list[str] = []
        self.call_names: list[str] = []  # what each call computes, for the DEBUG=2 profile
        args: list[bool | int | float] = []
        self.rand_slots: list[tuple[int, int, int]] = []  # (seed slot, offset slot, offset from the call's start)
        self.gathers: list[list[tuple[int, int]]] = []
        rand_offsets = {(n.arg[0], n.arg[1]): off for n, off in self.captured.rand}
        for j, item in enumerate(self.items):
            if item.kind == "view":
                continue
            self.call_names.append(f"{item.kind} {item.out.op.name} {item.out.shape}")
            if item.kind == "matmul":
                calls.append(self._matmul(item))
                continue
            kernel = self._lowered(j)
            body = render_c(kernel)
            name = "k_" + hashlib.sha256(body.encode()).hexdigest()[:16]
            functions[name] = body.replace("KERNEL", name).replace(f"void {name}(", f"static void {name}(", 1)
            self.call_names[-1] += f" {name}"  # DEBUG=3's source has it
            call = [self._ptr(item.out)] + [self._ptr(n, const=True) for n in item.inputs]
            if kernel.uses_error_flag:
                call.append(f"err + {len(self.gathers)}")
                self.gathers.append(kernel.gathers)
            if kernel.args:
                call.append(f"args + {len(args)}")
                for v in ir.walk_values(kernel.body):
                    if isinstance(v, ir.Rand):
                        seed, offset = kernel.args[v.seed.slot], kernel.args[v.offset.slot]
                        self.rand_slots.append((len(args) + v.seed.slot, len(args) + v.offset.slot,
                                                rand_offsets[(seed, offset)]))
                args += kernel.args
            calls.append(f"  {name}({', '.join(call)});")
        for k, node in self.final_copies:
            nbytes = node.dtype.itemsize * int(np.prod(node.shape))
            self.call_names.append(f"copy into state {node.shape}")
            calls.append(f"  memcpy(state[{k}], {self._ptr(node, const=True)}, {nbytes});")
        profile = debug_level() >= 2
        prelude = PRELUDE + PROGRAM_PRELUDE
        if profile:
            prelude += PROFILE_PRELUDE + f"static double fg_times[{max(len(calls), 1)}];\n"
            calls = [f"  {{ double t0 = fg_now();\n{c}\n  fg_times[{i}] += fg_now() - t0; }}"
                     for i, c in enumerate(calls)]
            functions["fg_profile"] = "double* fg_profile(void) { return fg_times; }\n"
        self.source = (prelude + "\n".join(functions.values()) +
                       "\nint32_t fg_run(char** in, char* arena, char** state, const fg_arg* args, int32_t* err, "
                       "void* sgemm, void* dgemm, void* threads) {\n  (void)in; (void)arena; (void)state; (void)args; "
                       "(void)err; (void)sgemm; (void)dgemm; (void)threads;\n" + "\n".join(calls) +
                       "\n  FG_GEMM_THREADS(0);\n  int32_t failed = 0;\n"
                       f"  for (int i = 0; i < {len(self.gathers)}; i++) failed |= err[i];\n  return failed;\n}}\n")
        lib = compile_library(self.source, ["fg_run"] + (["fg_profile"] if profile else []))
        self.fn = lib.fg_run
        self.profile: StepProfile | None = None
        if profile:
            lib.fg_profile.restype = ctypes.POINTER(ctypes.c_double)
            self.profile = StepProfile(self.call_names, np.ctypeslib.as_array(lib.fg_profile(), (max(len(calls), 1),)))
        self.fn.restype = ctypes.c_int32  # nonzero: a gather was out of range
        self.fn.argtypes = [ctypes.c_void_p] * 8
        self.args = np.frombuffer(_pack_args(args or [0.0]), np.float64).copy()  # the integers' bits as they are
        self.args_int = self.args.view(np.int64)
        self.err = np.zeros(max(len(self.gathers), 1), np.int32)
        self.in_ptrs = np.zeros(max(len(self.inputs), 1), np.uint64)
        self.bound_handles: list[np.ndarray | None] = [None] * len(self.inputs)
        self.private: list[np.ndarray | None] = [None] * len(self.inputs)  # where an input aliasing the arena is copied
        self.state_ptrs = np.array([a.ctypes.data for a in self.state_arrays] or [0], np.uint64)
        self.gemm = (cblas_gemm(float32), cblas_gemm(float64))
        self.call_args = [self.in_ptrs.ctypes.data, self.arena.ctypes.data + self.arena_base,
                          self.state_ptrs.ctypes.data, self.args.ctypes.data, self.err.ctypes.data,
                          self.gemm[0] or 0, self.gemm[1] or 0, blas_threads_setter() or 0]
        self.outputs = [self._output_node(r) for r in self.captured.roots]
        self.outputs_fixed = all(o is not None for o in self.outputs)
        self.input_state = [self.where[id(n)][1] if self.where[id(n)][0] == "state" else None for n in self.inputs]

    def _output_node(self, root: Node) -> Node | None:
        """The node a root's value is read from after a run (None: it is an input, bound per call)."""
        kind, key, _ = self.where[id(root)]
        if kind == "in":
            return None
        if kind == "state" and self.where[id(root)][2] == 0 and root.shape == self.state_arrays[key].shape:
            return self.state_nodes[key]
        node = source_node(Op.LOAD, None, root.shape, root.dtype, root.device)
        node.buffer = Buffer(root.device, root.shape, root.dtype, self.array_of(root))
        return node

    def _matmul(self, item: ScheduleItem) -> str:
        """C for one MATMUL item: CBLAS gemm per batch matrix where the layout allows, else a plain loop nest."""
        out = item.out
        (a_base, a_view), (b_base, b_view) = (strided_view(s) for s in out.srcs)
        *batch, m, n = out.shape
        k = out.srcs[0].shape[-1]
        a_ptr, b_ptr, c_ptr = self._ptr(a_base, True), self._ptr(b_base, True), self._ptr(out)
        lines = []
        loops = []
        a_off, b_off, c_off = [str(a_view.offset)], [str(b_view.offset)], []
        c_stride = m * n
        for d in reversed(range(len(batch))):
            c_off.append(f"b{d}*{c_stride}")
            c_stride *= batch[d]
        for d, size in enumerate(batch):
            loops.append(f"for (int64_t b{d} = 0; b{d} < {size}; b{d}++)")
            a_off.append(f"b{d}*{a_view.strides[d]}")
            b_off.append(f"b{d}*{b_view.strides[d]}")
        a_at, b_at, c_at = (f"({p} + {'+'.join(o) if o else '0'})" for p, o in
                            ((a_ptr, a_off), (b_ptr, b_off), (c_ptr, c_off)))
        la = blas_layout(m, k, a_view.strides[-2], a_view.strides[-1])
        lb = blas_layout(k, n, b_view.strides[-2], b_view.strides[-1])
        gemm = GEMM_TYPES.get(out.dtype)
        if m * n == 0:
            return "  /* empty matmul */"
        if k == 0:
            return f"  memset({c_ptr}, 0, {out.dtype.itemsize * m * n * int(np.prod(batch))});"
        if gemm is not None and la is not None and lb is not None and cblas_gemm(out.dtype) is not None:
            fn = "sgemm" if out.dtype == float32 else "dgemm"
            if m * n <= SPLIT_K_MAX_OUTPUTS and k >= SPLIT_K_MIN_K and THREADS > 1:
                # few outputs, a long k (a conv's weight gradient): BLAS splits the outputs between threads and
                # runs short of them; here each thread takes a slice of k into its own copy of the output
                t, parts = C_TYPES[out.dtype], THREADS
                chunk = -(-k // parts)
                lines.append(f"FG_GEMM_THREADS(1); {t} part[{parts}][{m * n}];\n#pragma omp parallel for "
                             f"num_threads({parts})\nfor (int c = 0; c < {parts}; c++) {{ int64_t k0 = c*{chunk}; "
                             f"int64_t kn = k0 + {chunk} > {k} ? {k} - k0 : {chunk}; "
                             f"(({gemm}){fn})({ROW_MAJOR}, {la[0]}, {lb[0]}, {m}, {n}, kn, 1.0, {a_at} + "
                             f"k0*{a_view.strides[-1]}, {la[1]}, {b_at} + k0*{b_view.strides[-2]}, {lb[1]}, 0.0, "
                             f"part[c], {n}); }}\nfor (int64_t e = 0; e < {m * n}; e++) {{ {t} s = part[0][e]; "
                             f"for (int c = 1; c < {parts}; c++) s += part[c][e]; {c_at}[e] = s; }}")
                return "  " + " ".join(loops) + " { " + " ".join(lines) + " }"
            small = gemm_threads(m, n, k) == 1
            if batch and small and int(np.prod(batch)) >= THREADS > 1:  # attention's heads: one matrix per thread
                call = (f"(({gemm}){fn})({ROW_MAJOR}, {la[0]}, {lb[0]}, {m}, {n}, {k}, 1.0, {a_at}, {la[1]}, "
                        f"{b_at}, {lb[1]}, 0.0, {c_at}, {n});")
                return (f"  FG_GEMM_THREADS(1);\n  #pragma omp parallel for collapse({len(batch)})\n  "
                        + " ".join(loops) + " { " + call + " }")
            lines.append(f"FG_GEMM_THREADS({1 if small else 0});")
            lines.append(f"(({gemm}){fn})({ROW_MAJOR}, {la[0]}, {lb[0]}, {m}, {n}, {k}, 1.0, {a_at}, {la[1]}, "
                         f"{b_at}, {lb[1]}, 0.0, {c_at}, {n});")
        else:
            acc = COMPUTE.get(out.dtype, C_TYPES[out.dtype])
            sa, sb = a_view.strides, b_view.strides
            lines.append(f"for (int64_t i = 0; i < {m}; i++) for (int64_t j = 0; j < {n}; j++) {{ {acc} s = 0; "
                         f"for (int64_t p = 0; p < {k}; p++) s += ({acc}){a_at}[i*{sa[-2]}+p*{sa[-1]}] * "
                         f"({acc}){b_at}[p*{sb[-2]}+j*{sb[-1]}]; {c_at}[i*{n}+j] = s; }}")
        return "  " + " ".join(loops) + " { " + " ".join(lines) + " }"

    # ---- running ----

    def run(self, bound: list[Buffer], rng: tuple[int, int]) -> list[Node]:
        """Bind the inputs, copy state values that were replaced from outside, run `fg_run`, return root nodes."""
        handles = self.bound_handles
        for i, b in enumerate(bound):
            h = b.handle
            if h is handles[i] and self.private[i] is None:  # the same array as last call: its address is bound
                continue
            k = self.input_state[i]
            if k is not None:  # a state replaced from outside: its values go into the persistent buffer
                if h is not self.state_arrays[k]:
                    np.copyto(self.state_arrays[k], h)
                continue
            if h is not handles[i]:
                handles[i] = h
                # an output of the last run fed back (h = step(h)): this run overwrites the arena, so read a copy
                self.private[i] = np.empty_like(h) if np.may_share_memory(h, self.arena) else None
                self.in_ptrs[i] = (h if self.private[i] is None else self.private[i]).ctypes.data
            if self.private[i] is not None:
                np.copyto(self.private[i], h)
        if self.rand_slots:
            seed, counter = rng
            for seed_slot, offset_slot, offset in self.rand_slots:
                self.args_int[seed_slot] = seed - 2**64 if seed >= 2**63 else seed
                self.args_int[offset_slot] = counter + offset
        if self.profile is not None:
            self.profile.runs += 1
        if self.fn(*self.call_args):
            k = int(np.flatnonzero(self.err)[0])
            dim, size = self.gathers[k][self.err[k] - 1]
            self.err[:] = 0
            raise IndexError(f"index out of bounds for dim {dim} with size {size} (in a jitted step)")
        if self.outputs_fixed:
            return self.outputs
        return [o if o is not None else _input_node(self.inputs, bound, r, self.captured)
                for o, r in zip(self.outputs, self.captured.roots)]

    def memory_plan(self) -> MemoryPlan:
        """The arena layout planned at capture."""
        return self.plan

    def kernel_profile(self) -> list[tuple[str, float]]:
        """(what, ms per run) for each call of `fg_run`, slowest first; empty unless captured with DEBUG>=2."""
        return self.profile.table() if self.profile is not None else []

    def state_value(self, k: int, results: list[Node]) -> Node:
        """The node state k holds after a run: its persistent buffer, the same node every call."""
        return self.state_nodes[k]


def _input_node(inputs: list[Node], bound: list[Buffer], root: Node, captured: Captured) -> Node:
    """A root that is one of the inputs (the function returned a tensor it was given): the bound buffer."""
    buf = bound[next(i for i, n in enumerate(inputs) if n is root)]
    node = source_node(Op.LOAD, buf, root.shape, root.dtype, root.device)
    node.buffer = buf
    return node
