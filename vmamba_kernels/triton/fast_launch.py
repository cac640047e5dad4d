"""Launching compiled Triton kernels without JITFunction.run's per-call work (issue #20: cheap calls).

`kernel[grid](*args, **meta)` on a @triton.jit function binds the arguments, computes Triton's
specialization of every one of them, hashes it, looks the compiled kernel up and then calls its launcher:
several microseconds a launch that the path below skips (measured: reports/logs/2026-12-05_host_cost_cpu.md).
`launchable(fn)` wraps a kernel so that `kernel[grid](*args, **meta)` keeps that spelling but, after the first
launch of a configuration, calls the compiled kernel's launcher directly, with exactly the arguments
JITFunction.run would pass it.

The configuration key holds everything Triton's choice of a compiled kernel can depend on: the current
device, the meta arguments (constexprs and options such as num_warps) with their values' types (2 and 2.0 are one
dict key, two kernels for Triton), and per positional argument its type and value, or for a tensor its dtype and
whether its address is 16-byte aligned (what Triton's signature and specialization see of a tensor). A key seen
before reuses the compiled kernel JITFunction.run chose the first time; a new key (a new dtype, a misaligned view,
another shape) goes through JITFunction.run, which compiles or finds the kernel and launches it, and is remembered.
The arguments' part of the key is built in C by the compiled extension's `launch_key` where it is loaded
(csrc/common/arg_key.h: the scan forward's raw call took 11.0 instead of 15.0 us on the CI VM,
reports/logs/2026-12-07_launch_key.md), else by a Python loop; the two never share entries.

Direct launches are skipped (JITFunction.run does the call) when Triton's interpreter runs the kernel, when a
launch hook (a profiler's), debug mode, instrumentation or a stage-inspection hook is set (they change what a
launch does), for a grid given as a function, with a Triton older than 3.4 (no `triton.knobs`), and when
`vmamba_kernels.tuning("triton", fast_launch=False)`. tests/test_triton_fast_launch.py compiles the real
kernels for sm_90 on a machine without a GPU and checks that both paths hand the launcher the same arguments.

On the CUDA launchers of Triton 3.6 and 3.8 a direct launch goes one step further down: CudaLauncher.__call__
only allocates scratch (none for these kernels) and forwards to its C `launch`, so a direct launch calls that C
function itself, with tensors passed as their addresses. The C launcher takes an int in a pointer slot as the
address; a tensor costs it a data_ptr() call and a cuPointerGetAttribute driver query per argument (the query
that refuses a CPU tensor: the key holds whether each tensor is a CUDA one, so a CPU tensor misses the cache
and gets JITFunction.run's error). Any other launcher, scratch or instrumentation keeps the launcher's __call__
with the tensors themselves.
"""
from __future__ import annotations

import torch
from triton.runtime import driver
from triton.runtime.jit import JITFunction

from ..dispatch import extension_function
from .tuning import TUNING

try:
    from triton import knobs  # Triton 3.4 and newer
except ImportError:  # an older Triton: every launch through JITFunction.run
    knobs = None

# The launcher whose __call__ a C-level direct launch mirrors, and the layout of the C launch's arguments it
# forwards, which differs between Triton releases: "3.6" (a generated module per signature, kernel arguments
# spread) and "3.8" (one module, annotations and signature, kernel arguments as a tuple); others keep __call__
try:
    import triton as _triton
    from triton.backends.nvidia.driver import CudaLauncher as _CudaLauncher

    _LAYOUT = ".".join(_triton.__version__.split(".")[:2])
    _LAYOUT = _LAYOUT if _LAYOUT in ("3.6", "3.8") else None
except ImportError:
    _CudaLauncher, _LAYOUT = None, None

_MAX_ENTRIES = 1024  # per kernel; cleared when full (a model has a few dozen shapes per kernel)


_Tensor = torch.Tensor


def _idle(hook) -> bool:
    # Triton 3.6+ keeps the launch hooks as HookChain objects (empty unless a profiler adds one); earlier, None
    return hook is None or not getattr(hook, "calls", (hook,))


_NO_HOOKS = (None, None)


def _direct_hooks():
    """(enter, exit) hooks to hand the launcher when a direct launch is allowed now, else None: both None, as
    the idle hooks do nothing (Triton 3.6's idle HookChain objects would each be called per launch, empty)."""
    if knobs is None or not TUNING.get().fast_launch:
        return None
    rt = knobs.runtime
    enter, exit_ = rt.launch_enter_hook, rt.launch_exit_hook
    if (not _idle(enter) or not _idle(exit_) or rt.debug or getattr(rt, "add_stages_inspection_hook", None) is not None
            or knobs.compilation.instrumentation_mode):
        return None
    return _NO_HOOKS


class LaunchableKernel:
    """A @triton.jit function whose launches `kernel[grid](*args, **meta)` skip JITFunction.run once a
    configuration has been launched (module docstring). Other attributes are the wrapped function's."""

    def __init__(self, fn):
        self.fn = fn
        self.direct = isinstance(fn, JITFunction)  # False under TRITON_INTERPRET (an InterpretedFunction)
        self._params = list(fn.params) if self.direct else []
        self._cache: dict = {}
        self.launches = [0, 0]  # [through JITFunction.run, direct]: tests and benchmarks read it

    def __getattr__(self, name):
        if name == "fn":  # not set yet (copy, unpickling): no recursion through self.fn
            raise AttributeError(name)
        return getattr(self.fn, name)

    def __getitem__(self, grid):
        def launch(*args, **meta):
            return self.launch(grid, args, meta)
        return launch

    def launch(self, grid, args: tuple, meta: dict):
        hooks = _direct_hooks() if self.direct and not callable(grid) else None  # a grid function: Triton's path
        if hooks is None:
            self.launches[0] += 1
            return self.fn[grid](*args, **meta)
        drv = driver.active
        device = drv.get_current_device()
        grid = tuple(grid)
        # the arguments' part of the key and the arguments as a C launch takes them (_python_launch_key), from
        # the compiled extension's launch_key where it is loaded and encodes them all (csrc/common/arg_key.h)
        native = _NATIVE_KEY[0]
        if native is _untried:
            native = _find_launch_key()
        got = native(args) if native is not None else None
        if got is None:
            got = _python_launch_key(args)
        arg_key, ptrs = got
        # not the grid: a direct launch takes its own call's grid, and Triton's choice of kernel does not depend on it
        key = (device, tuple(meta.items()), tuple(map(type, meta.values())), arg_key)
        try:
            hit = self._cache.get(key)
        except TypeError:  # an unhashable argument (a list, say): Triton's path, nothing remembered
            self.launches[0] += 1
            return self.fn[grid](*args, **meta)
        if hit is None:
            self.launches[0] += 1
            kernel = self.fn[grid](*args, **meta)
            if kernel is not None:
                self._remember(key, kernel, args, meta)
            return kernel
        run, function, packed, tail, kernel, c_launch = hit
        n = len(grid)
        g1, g2 = grid[1] if n > 1 else 1, grid[2] if n > 2 else 1
        # the launch metadata is read only by launch hooks, and the hooks are idle: None instead of building it
        if c_launch is None:
            run(grid[0], g1, g2, drv.get_current_stream(device), function, packed, None, *hooks, *args, *tail)
        else:  # what CudaLauncher.__call__ hands its C launch when no scratch is needed (_c_launch)
            launch, coop, pdl, annotations, signature = c_launch
            if annotations is None:  # 3.6
                launch(grid[0], g1, g2, drv.get_current_stream(device), function, coop, pdl, None, None, packed, None,
                       *hooks, *ptrs, *tail)
            else:
                launch(grid[0], g1, g2, drv.get_current_stream(device), function, coop, pdl, packed, None, *hooks,
                       None, None, annotations, signature, (*ptrs, *tail))
        self.launches[1] += 1
        return kernel

    def _remember(self, key, kernel, args, meta) -> None:
        # the parameters after the positional ones, in the kernel's order: what JITFunction.run's binder passes
        # for them (a meta value, else the parameter's default); options such as num_warps are not parameters
        tail = []
        for p in self._params[len(args):]:
            if p.name in meta:
                tail.append(meta[p.name])
            elif p.has_default:
                tail.append(p.default)
            else:  # JITFunction.run would have raised; never cache what it did not accept
                return
        if len(self._cache) >= _MAX_ENTRIES:
            self._cache.clear()
        run = kernel.run
        self._cache[key] = (run, kernel.function, kernel.packed_metadata, tuple(tail), kernel, _c_launch(run))

    def clear(self) -> None:
        """Forget the remembered configurations (the next launch of each goes through JITFunction.run)."""
        self._cache.clear()


def _python_launch_key(args: tuple):
    """(key, addresses) of a launch's positional arguments. The key holds per argument what Triton's
    specialization can see of it: a tensor's dtype and 16-byte alignment (and whether it is a CUDA tensor: module
    docstring), anything else its type and value (the type too: True == 1 == 1.0 as dict keys, not for Triton).
    The addresses are the arguments with each tensor replaced by its data_ptr(), read once for both. One loop
    filling both lists: 1.4 us less than two comprehensions for 10 tensors and 7 scalars on the CI VM."""
    ptrs, parts = [], []
    put_ptr, put_part = ptrs.append, parts.append
    for a in args:
        if isinstance(a, _Tensor):
            p = a.data_ptr()
            put_ptr(p)
            put_part((a.dtype, not (p & 15), a.is_cuda))
        else:
            put_ptr(a)
            put_part((type(a), a))
    return tuple(parts), ptrs


# The compiled extension's launch_key (csrc/common/arg_key.h), looked up at the first direct launch: `_untried`
# until then, None where the extension is not there (the Python loop keys every launch).
def _untried(args):
    return None


_NATIVE_KEY: list = [_untried]


def _find_launch_key():
    fn = _NATIVE_KEY[0] = extension_function("launch_key")
    return fn


def use_native_launch_key(on: bool) -> None:
    """Key direct launches with the compiled extension's launch_key (True: looked up again at the next launch)
    or with the Python loop (False). The two keys never match each other's entries (bytes against tuples), so
    a switch only adds entries. For tests and benchmarks."""
    _NATIVE_KEY[0] = _untried if on else None


def native_launch_key() -> bool:
    """Whether direct launches are keyed by the compiled extension's launch_key (after the first launch)."""
    return _NATIVE_KEY[0] not in (None, _untried)


def _c_launch(run):
    """(C launch, cooperative, pdl, annotations, signature) of a CudaLauncher of Triton 3.6 (annotations and
    signature None) or 3.8 whose __call__ would only forward to its C launch (no global or profile scratch, no
    sanitizer), else None (module docstring)."""
    if _LAYOUT is None or type(run).__call__ is not _CudaLauncher.__call__:
        return None
    try:
        if run.global_scratch_size or run.profile_scratch_size or getattr(run, "gsan_enabled", False):
            return None
        if _LAYOUT == "3.6":
            return run.launch, run.launch_cooperative_grid, run.launch_pdl, None, None
        return run.launch, run.launch_cooperative_grid, run.launch_pdl, run.arg_annotations, run.kernel_signature
    except AttributeError:  # a launcher laid out otherwise: its own __call__
        return None


def launchable(fn) -> LaunchableKernel:
    """Decorator over @triton.jit: `@launchable` then `@triton.jit` on a kernel that is launched from Python."""
    return LaunchableKernel(fn)
