"""Mutants of vmamba_kernels/triton/fast_launch.py (the campaign of 2026-12-07: 21 of these 39 survived the suite
before tests/test_triton_fast_launch.py gained its launcher-layout, _c_launch, knob, cache-bound, keyword-argument,
meta-name, key-in-use and per-device stream checks; none now, about 5 minutes on 2 cores). The campaign also found
meta keyed by value alone (f=2 and f=2.0 by keyword shared an entry), fixed since: F40. The grid, which the key held
then, was dropped from it (a direct launch takes its own call's grid; leaving it out was an equivalent mutant).
Run: python -m tests.tools.mutate tests/tools/mutants/fast_launch.py"""

FILE = "vmamba_kernels/triton/fast_launch.py"
TESTS = ["tests/test_triton_fast_launch.py",
         "tests/test_bench_latency.py::test_raw_python_key_rows_key_triton_launches_in_python",
         "tests/test_bench_latency.py::test_raw_jit_run_rows_turn_triton_direct_launches_off"]

_KEY = "key = (device, tuple(meta.items()), tuple(map(type, meta.values())), arg_key)"
_PART = "put_part((a.dtype, not (p & 15), a.is_cuda))"
_STREAM = "drv.get_current_stream(device)"

# (id, old text, new text, what the mutant breaks[, occurrence of old from 0])
MUTANTS = [
    # the configuration key
    ('F01', _KEY, "key = (tuple(meta.items()), tuple(map(type, meta.values())), arg_key)",
     'key: current device dropped'),
    ('F02', _KEY, "key = (device, arg_key)", 'key: meta (constexprs, num_warps) dropped'),
    ('F03', _KEY, "key = (device, tuple(meta.values()), tuple(map(type, meta.values())), arg_key)",
     'key: meta names dropped (values only)'),
    ('F04', _KEY, "key = (device, tuple(meta.items()), tuple(map(type, meta.values())))",
     "key: the arguments' part dropped"),
    ('F40', _KEY, "key = (device, tuple(meta.items()), arg_key)", 'key: meta values without their types (2 == 2.0)'),
    ('F05', _PART, "put_part((not (p & 15), a.is_cuda))", 'python key: tensor dtype dropped'),
    ('F06', _PART, "put_part((a.dtype, a.is_cuda))", 'python key: 16-byte alignment dropped'),
    ('F07', _PART, "put_part((a.dtype, not (p & 7), a.is_cuda))", 'python key: 8-byte instead of 16-byte alignment'),
    ('F08', _PART, "put_part((a.dtype, not (p & 15)))", 'python key: is_cuda dropped (CPU tensor reuses a launch)'),
    ('F09', "put_part((type(a), a))", "put_part(a)", 'python key: scalar type dropped (True == 1 == 1.0)'),
    # the native key
    ('F10', "got = native(args) if native is not None else None", "got = None",
     'native key looked up but its result ignored (Python key always)'),
    ('F11', "if native is _untried:", "if False:", 'native key never looked up'),
    ('F12', 'fn = _NATIVE_KEY[0] = extension_function("launch_key")', 'fn = extension_function("launch_key")',
     'native key looked up at every launch, never stored'),
    ('F13', "_NATIVE_KEY[0] = _untried if on else None", "_NATIVE_KEY[0] = _untried",
     'use_native_launch_key(False) ignored'),
    ('F14', "return _NATIVE_KEY[0] not in (None, _untried)", "return _NATIVE_KEY[0] is not None",
     'native_launch_key() true before the lookup'),
    # the cache
    ('F15', "except TypeError:", "except KeyError:", 'unhashable argument: our TypeError instead of Triton\'s path'),
    ('F16', "if kernel is not None:", "if False:", 'nothing remembered: never a direct launch'),
    ('F17', "if len(self._cache) >= _MAX_ENTRIES:", "if False:", 'cache unbounded'),
    ('F18', "if len(self._cache) >= _MAX_ENTRIES:", "if len(self._cache) > _MAX_ENTRIES:",
     'cache bound off by one'),
    ('F19', "        self._cache.clear()\n", "        pass\n", 'clear() keeps the remembered configurations', 1),
    ('F20', "if p.name in meta:", "if p.name in meta and not p.has_default:",
     'tail: a defaulted parameter passed in meta gets its default'),
    # the launch
    ('F21', "grid[2] if n > 2 else 1", "1", 'grid z dropped'),
    ('F22', _STREAM, "drv.get_current_stream(0)", 'C launch (3.8): stream of device 0, not the current one', 2),
    ('F23', "function, coop, pdl, packed, None, *hooks,", "function, pdl, coop, packed, None, *hooks,",
     'C launch (3.8): cooperative and pdl swapped'),
    ('F24', "annotations, signature, (*ptrs, *tail))", "annotations, signature, (*tail, *ptrs))",
     'C launch (3.8): keyword parameters before the positional ones'),
    ('F25', "coop, pdl, None, None, packed, None,", "coop, pdl, packed, None, None, None,",
     'C launch (3.6): metadata in a scratch slot'),
    ('F26', "*hooks, *ptrs, *tail)", "*hooks, *tail, *ptrs)", 'C launch (3.6): keyword parameters first'),
    ('F27', "*hooks, *args, *tail)", "*hooks, *tail, *args)", '__call__ launch: keyword parameters first'),
    ('F28', "if annotations is None:  # 3.6", "if annotations is not None:  # 3.6", 'C launch layouts swapped'),
    ('F29', '_LAYOUT in ("3.6", "3.8")', '_LAYOUT in ("3.6",)', 'Triton 3.8 not given the C-level launch'),
    # which launcher may be called at C level
    ('F30', "if run.global_scratch_size or ", "if ", 'C launch although global scratch is needed'),
    ('F31', " or getattr(run, \"gsan_enabled\", False)", "", 'C launch although the sanitizer is on'),
    ('F32', "type(run).__call__ is not _CudaLauncher.__call__", "False",
     'C launch past a launcher subclass\'s own __call__'),
    # when a direct launch is allowed
    ('F33', "not _idle(exit_) or ", "", 'launch exit hook ignored'),
    ('F34', 'getattr(hook, "calls", (hook,))', 'getattr(hook, "calls", ())', 'a plain-function hook counted idle'),
    ('F35', " or rt.debug", "", 'debug mode ignored'),
    ('F36', ' or getattr(rt, "add_stages_inspection_hook", None) is not None', "", 'stage-inspection hook ignored'),
    ('F37', "\n            or knobs.compilation.instrumentation_mode", "", 'instrumentation mode ignored'),
    ('F38', "if knobs is None or not TUNING.get().fast_launch:", "if knobs is None:", 'fast_launch=False ignored'),
    ('F39', " and not callable(grid)", "", 'grid function taken as a tuple'),
]
