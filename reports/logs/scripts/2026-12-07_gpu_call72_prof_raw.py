"""Where a raw triton / cupy call spends its host time on the GPU host: cProfile of back-to-back raw calls."""
import cProfile, pstats, io, sys, time
import torch
from bench import overhead as ov
impls = sys.argv[1].split(",") if len(sys.argv) > 1 else ["triton", "cupy"]
for impl in impls:
    for op in ("cross_scan", "selective_scan"):
        case = ov._inputs(op, "t_s3", torch.device("cuda"), torch.float16, False, impl)
        for _ in range(50):
            case.raw()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(1000):
            case.raw()
        dt = (time.perf_counter() - t) / 1000 * 1e6
        torch.cuda.synchronize()
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(1000):
            case.raw()
        pr.disable()
        torch.cuda.synchronize()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(14)
        print(f"==== {impl} {op} raw: {dt:.1f} us/call unprofiled")
        print("\n".join(l[:150] for l in s.getvalue().splitlines()[6:26]))

# the pieces of one cupy launch, timed alone (us per call, best of 5 x 2000)
if "cupy" in impls:
    import timeit
    import cupy
    import numpy as np
    from vmamba_kernels.cupy import launch as CL, sources
    x = torch.randn(1, 384, 14, 14, device="cuda", dtype=torch.float16)
    y = torch.empty(1, 4, 384, 196, device="cuda", dtype=torch.float16)
    CL.cross_scan_fwd(x, "cross2d", False)
    (lp, name), = [v for v in CL._CROSS_PLANS.values() if v is not None][:1]
    k = CL._kernel(sources.CROSS_HEADER, name, 0)
    s = CL._cupy_stream(CL._raw_stream(0), 0)
    dev = cupy.cuda.Device(0)
    args = (np.uint64(x.data_ptr()), np.uint64(y.data_ptr()))
    def t(label, f):
        try:
            torch.cuda.synchronize()
            us = min(timeit.repeat(f, number=1000, repeat=3)) / 1000 * 1e6
            torch.cuda.synchronize()
            print(f"piece {label:40s} {us:7.2f} us")
        except Exception as e:
            print(f"piece {label:40s} failed: {type(e).__name__}: {e}")
    def dev_ctx():
        with cupy.cuda.Device(0):
            pass
    def stream_ctx():
        with s:
            pass
    t("torch.empty (B,4,C,L)", lambda: torch.empty((1, 4, 384, 196), dtype=torch.float16, device=x.device))
    t("x.contiguous()", lambda: x.contiguous())
    t("np.uint64 x2", lambda: (np.uint64(x.data_ptr()), np.uint64(y.data_ptr())))
    t("torch current device", lambda: torch.cuda.current_device())
    t("raw stream", lambda: CL._raw_stream(0))
    t("with cupy.cuda.Device(0)", dev_ctx)
    t("with stream", stream_ctx)
    t("tuning.knobs()", lambda: CL.tuning.knobs())
    t("RawKernel call (current stream)", lambda: k(lp.grid, lp.block, args, shared_mem=lp.smem))
    t("Function call with stream=", lambda: k.kernel(lp.grid, lp.block, args, lp.smem, s))
    fptr = k.kernel.ptr
    g3, b3 = tuple(lp.grid) + (1,) * (3 - len(lp.grid)), tuple(lp.block) + (1,) * (3 - len(lp.block))
    buf = np.array([x.data_ptr(), y.data_ptr()], dtype=np.uint64)
    params = np.array([buf.ctypes.data, buf.ctypes.data + 8], dtype=np.uint64)
    sp = CL._raw_stream(0)
    t("driver.launchKernel", lambda: cupy.cuda.driver.launchKernel(fptr, *g3, *b3, lp.smem, sp,
                                                                    params.ctypes.data, 0))
    t("full _run", lambda: CL._run(sources.CROSS_HEADER, name, lp, args, x.device))
    t("cross_scan_fwd raw", lambda: CL.cross_scan_fwd(x, "cross2d", False))
    try:
        torch.cuda.synchronize()
        y.zero_(); cupy.cuda.driver.launchKernel(fptr, *g3, *b3, lp.smem, sp, params.ctypes.data, 0)
        torch.cuda.synchronize()
        print("driver.launchKernel output equals:", torch.equal(y, CL.cross_scan_fwd(x, "cross2d", False)))
    except Exception as e:
        print("driver.launchKernel check failed:", type(e).__name__, e)
