"""CPU: the Python pieces of a public selective_scan call (impl triton, bench.overhead stand-in kernels, the op function
replaced by a no-op): public call, dispatch.prepare, the prepared call, and their parts; min / median of 11 rounds x
5000 calls, us. Run with fast_call off to see the Python path: VMAMBA_FAST_CALL=0 (2026-12-08, before fast_call)."""
import os, statistics, time
os.environ.setdefault("TRITON_INTERPRET", "1")
import torch
import vmamba_kernels as vk
from vmamba_kernels import dispatch, op_table, api
from bench import overhead as ov

def rounds(fn, n=5000, r=11):
    for _ in range(300): fn()
    out = []
    for _ in range(r):
        t = time.perf_counter()
        for _ in range(n): fn()
        out.append((time.perf_counter() - t) / n * 1e6)
    return "min %5.2f med %5.2f" % (min(out), statistics.median(out))

with ov.mocked_kernels("triton"):
  for grad in (False, True):
    case = ov._inputs("selective_scan", "t_s3", torch.device("cpu"), torch.float16, grad, "triton")
    case.call()
    call, a = case.prepare()
    res = (torch.empty(1), torch.empty(1), torch.empty(1))
    key = "scan_fwd"
    old = call.ops[key]
    call.ops[key] = lambda *args: res
    print("grad", grad)
    print("  public, no-op op fn   ", rounds(case.call))
    print("  prepare               ", rounds(case.prepare))
    print("  call(a)               ", rounds(lambda: call(a)))
    print("  get_default_impl      ", rounds(dispatch.get_default_impl))
    print("  is_compiling          ", rounds(torch.compiler.is_compiling))
    print("  _plain_eager          ", rounds(vk._library._plain_eager))
    args = (a.u, a.delta, a.A, a.B, a.C, a.D, a.delta_bias, True, None)
    print("  arg_key               ", rounds(lambda: dispatch.arg_key(args)))
    print("  fast                  ", rounds(lambda: op_table.spec("selective_scan").fast(*args)))
    print("  lambda: None          ", rounds(lambda: None))
    call.ops[key] = old
