// The CUDA C++ that fusegrad prints, compiled by g++ and run on the CPU (tests/cuda_emulator.py): CUDA's
// keywords as macros, its built-in indices as globals the launcher sets, and each thread of a block as a fiber
// (a stack switch), so __syncthreads and warp shuffles wait exactly as on a GPU: a fiber runs until it must wait, and a
// barrier opens once every thread it waits for has arrived. Kernels without either run their threads one by one.
// No C++ standard headers: they would triple the compile time of every kernel module.
#include <stdint.h>
extern "C" void* malloc(unsigned long size);

#define memcpy __builtin_memcpy
#define FG_MATH(name)                                                     \
  static inline float name##f(float x) { return __builtin_##name##f(x); } \
  static inline double name(double x) { return __builtin_##name(x); }
FG_MATH(exp2)
FG_MATH(log2)
FG_MATH(sin)
FG_MATH(sqrt)
static inline float fmodf(float x, float y) { return __builtin_fmodf(x, y); }
static inline double fmod(double x, double y) { return __builtin_fmod(x, y); }
static inline float fmaf(float x, float y, float z) { return __builtin_fmaf(x, y, z); }
static inline double fma(double x, double y, double z) { return __builtin_fma(x, y, z); }
#define INFINITY __builtin_inff()
#define NAN __builtin_nanf("")

namespace fg {
template <class T> struct unref { typedef T type; };
template <class T> struct unref<T&> { typedef T type; };
template <unsigned long... I> struct seq {};
template <unsigned long N, unsigned long... I> struct make_seq : make_seq<N - 1, N - 1, I...> {};
template <unsigned long... I> struct make_seq<0, I...> { typedef seq<I...> type; };
}  // namespace fg

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __restrict__ __restrict
#define __shared__ static volatile  // one block runs at a time: its shared memory can be statics (volatile: fibers switch)

struct fg_dim3 { unsigned int x, y, z; };
fg_dim3 threadIdx, blockIdx, blockDim, gridDim;

static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }

// float16 as the PTX conversions do it: round to nearest even, from float and from double (one rounding)
static inline float fg_h2f(unsigned short h) { _Float16 x; memcpy(&x, &h, 2); return (float)x; }
static inline unsigned short fg_f2h(float f) { _Float16 x = (_Float16)f; unsigned short h; memcpy(&h, &x, 2); return h; }
static inline unsigned short fg_f2h(double f) { _Float16 x = (_Float16)f; unsigned short h; memcpy(&h, &x, 2); return h; }

enum { FG_RUNNABLE, FG_AT_WARP_BARRIER, FG_AT_BLOCK_BARRIER, FG_DONE };
enum { FG_MAX_BLOCK = 1024, FG_STACK = 1 << 16 };

static void fg_fiber_main();

// Switching between the scheduler and a fiber: on x86-64 six callee-saved registers and the stack pointer (ucontext
// would make two system calls per switch, and a block's reduction switches thousands of times); ucontext elsewhere.
#if defined(__x86_64__)
__asm__(".text\n.p2align 4\nfg_switch_stack:\n"  // (void** save_sp, void* load_sp)
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n  ret\n");
extern "C" void fg_switch_stack(void** save_sp, void* load_sp) __asm__("fg_switch_stack");
static void* fg_scheduler;
static void* fg_fiber[FG_MAX_BLOCK];

static void fg_start_fiber(int t, char* stack) {
  void** top = (void**)(((uintptr_t)stack + FG_STACK) & ~(uintptr_t)15);
  top[-1] = 0;  // where a return address would be: fg_fiber_main starts as if called, and never returns
  top[-2] = (void*)fg_fiber_main;  // what the first switch's `ret` jumps to
  for (int r = 3; r <= 8; r++) top[-r] = 0;  // the six registers the first switch pops
  fg_fiber[t] = top - 8;
}
static void fg_enter_fiber(int t) { fg_switch_stack(&fg_scheduler, fg_fiber[t]); }
static void fg_leave_fiber(int t) { fg_switch_stack(&fg_fiber[t], fg_scheduler); }
#else
#include <ucontext.h>
static ucontext_t fg_scheduler;
static ucontext_t fg_fiber[FG_MAX_BLOCK];

static void fg_start_fiber(int t, char* stack) {
  getcontext(&fg_fiber[t]);
  fg_fiber[t].uc_stack.ss_sp = stack;
  fg_fiber[t].uc_stack.ss_size = FG_STACK;
  fg_fiber[t].uc_link = 0;
  makecontext(&fg_fiber[t], fg_fiber_main, 0);
}
static void fg_enter_fiber(int t) { swapcontext(&fg_scheduler, &fg_fiber[t]); }
static void fg_leave_fiber(int t) { swapcontext(&fg_fiber[t], &fg_scheduler); }
#endif
static int fg_state[FG_MAX_BLOCK];
static char* fg_stacks;
static int fg_current;
static void (*fg_body)(void**);
static void** fg_params;
static uint64_t fg_lanes[FG_MAX_BLOCK];  // what each thread offers to its warp's shuffle
static void* fg_site[FG_MAX_BLOCK];  // where each waiting thread called the barrier: all must wait at the same one

static void fg_wait(int state, void* site) {
  fg_state[fg_current] = state;
  fg_site[fg_current] = site;
  fg_leave_fiber(fg_current);
}

__attribute__((noinline)) static void __syncthreads() { fg_wait(FG_AT_BLOCK_BARRIER, __builtin_return_address(0)); }

template <class T>
__attribute__((noinline)) static T __shfl_down_sync(unsigned int mask, T v, int delta) {
  static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
  (void)mask;  // fusegrad shuffles whole warps only
  int me = fg_current, lane = me & 31;
  void* site = __builtin_return_address(0);
  memcpy(&fg_lanes[me], &v, sizeof(T));
  fg_wait(FG_AT_WARP_BARRIER, site);  // every lane has offered its value
  T out = v;
  if (lane + delta < 32) memcpy(&out, &fg_lanes[me + delta], sizeof(T));
  fg_wait(FG_AT_WARP_BARRIER, site);  // every lane has read before any offers again
  return out;
}

static void fg_fiber_main() {
  fg_body(fg_params);
  fg_state[fg_current] = FG_DONE;
  fg_leave_fiber(fg_current);
}

// Whether every thread in [begin, end) waiting in `state` waits at the same call site.
static int fg_same_site(int begin, int end, int state) {
  void* site = 0;
  for (int t = begin; t < end; t++) {
    if (fg_state[t] != state) continue;
    if (site && fg_site[t] != site) return 0;
    site = fg_site[t];
  }
  return 1;
}

// Releases the barrier every thread that has not finished now waits at, if there is one: a warp whose lanes all
// wait at one shuffle, else the block when all its live threads wait at one __syncthreads. 0 when none can open,
// -1 when threads wait at different ones or a shuffle waits for a lane that has exited (undefined on a GPU).
static int fg_open_barrier(int threads) {
  for (int w = 0; w < threads; w += 32) {
    int end = w + 32 < threads ? w + 32 : threads, waiting = 0, live = 0;
    for (int t = w; t < end; t++) {
      live += fg_state[t] != FG_DONE;
      waiting += fg_state[t] == FG_AT_WARP_BARRIER;
    }
    if (waiting && waiting == live) {
      if (live != end - w || !fg_same_site(w, end, FG_AT_WARP_BARRIER)) return -1;
      for (int t = w; t < end; t++)
        if (fg_state[t] == FG_AT_WARP_BARRIER) fg_state[t] = FG_RUNNABLE;
      return 1;
    }
  }
  int live = 0, waiting = 0;
  for (int t = 0; t < threads; t++) {
    live += fg_state[t] != FG_DONE;
    waiting += fg_state[t] == FG_AT_BLOCK_BARRIER;
  }
  if (!waiting || waiting != live) return 0;
  if (!fg_same_site(0, threads, FG_AT_BLOCK_BARRIER)) return -1;
  for (int t = 0; t < threads; t++)
    if (fg_state[t] == FG_AT_BLOCK_BARRIER) fg_state[t] = FG_RUNNABLE;
  return 1;
}

// Runs one block as fibers; 1 when its threads deadlock (a barrier some thread never reaches), 3 when they diverge
// at barriers or shuffles.
static int fg_run_block_as_fibers(int threads) {
  if (!fg_stacks) fg_stacks = (char*)malloc((uintptr_t)FG_MAX_BLOCK * FG_STACK);
  for (int t = 0; t < threads; t++) {
    fg_start_fiber(t, fg_stacks + (uintptr_t)t * FG_STACK);
    fg_state[t] = FG_RUNNABLE;
  }
  for (;;) {
    int ran = 0, done = 0;
    for (int t = 0; t < threads; t++) {
      if (fg_state[t] != FG_RUNNABLE) continue;
      fg_current = t;
      threadIdx.x = t;
      fg_enter_fiber(t);
      ran = 1;
    }
    for (int t = 0; t < threads; t++) done += fg_state[t] == FG_DONE;
    if (done == threads) return 0;
    if (ran) continue;
    int opened = fg_open_barrier(threads);
    if (opened <= 0) return opened ? 3 : 1;
  }
}

// The grid, block after block. Returns 0, 1 on a deadlock, 2 for a launch shape no GPU accepts, 3 on divergence.
static int fg_launch(void (*body)(void**), void** params, unsigned grid, unsigned block, int cooperative) {
  if (grid == 0 || block == 0 || block > FG_MAX_BLOCK) return 2;
  fg_body = body;
  fg_params = params;
  gridDim = {grid, 1, 1};
  blockDim = {block, 1, 1};
  threadIdx = {0, 0, 0};
  for (unsigned b = 0; b < grid; b++) {
    blockIdx = {b, 0, 0};
    if (cooperative) {
      int status = fg_run_block_as_fibers((int)block);
      if (status) return status;
    } else {
      for (unsigned t = 0; t < block; t++) {
        threadIdx.x = t;
        body(params);
      }
    }
  }
  return 0;
}

// cuLaunchKernel's `kernelParams`: an array of pointers, one to each argument's value
template <class... A, unsigned long... I>
static void fg_call(void (*kernel)(A...), void** p, fg::seq<I...>) {
  kernel(*static_cast<typename fg::unref<A>::type*>(p[I])...);
}

template <class... A>
static constexpr int fg_arity(void (*)(A...)) { return sizeof...(A); }

#define FG_EXPORT(name, cooperative)                                                                   \
  extern "C" int fg_params_##name() { return fg_arity(name); }                                          \
  extern "C" int fg_launch_##name(unsigned grid, unsigned block, void** params) {                      \
    return fg_launch([](void** p) { fg_call(name, p, typename fg::make_seq<fg_arity(name)>::type{}); },   \
                     params, grid, block, cooperative);                                                 \
  }
