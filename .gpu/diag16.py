"""Diagnose the two GPU tolerance failures of issue 16: print error vs the fp32 rounding scale of each sum."""
import sys, zlib, random, torch
sys.argv = sys.argv[:1]
import tests.test_cuda_selective_scan as tc
import tests.scan_cases as sc

stash = {}
orig_ref = tc._reference
def ref(ins, softplus, out_dtype, dout):
    r = orig_ref(ins, softplus, out_dtype, dout); stash["g"] = r[2]; return r
tc._reference = ref
orig_ac = tc.assert_close
def ac(name, a, e, rtol, atol):
    err = (a.double() - e.double()).abs()
    tol = (atol if not torch.is_tensor(atol) else atol.double()) + rtol * e.double().abs()
    bad = (err > tol)
    if bad.any() or name.startswith("ddelta_bias") or name.startswith("dD"):
        gd = stash.get("g")
        scale = ""
        if gd is not None and gd[1] is not None:
            dd = gd[1].double()  # d delta (b, KD, L)
            scale = f" sum|ddelta| per ch max {dd.abs().sum((0, 2)).max().item():.4g}"
        print(f"{name}: bad {int(bad.sum())}/{bad.numel()} max err {err.max().item():.4g} max|e| {e.abs().max().item():.4g}"
              f" worst err/tol {(err / tol).max().item():.3g}{scale}; a={a.flatten()[:6].tolist()} e={e.flatten()[:6].tolist()}")
tc.assert_close = ac
from vmamba_kernels.cuda import extension  # noqa: F401 (loads the ops)
ops = torch.ops.vmamba_cuda
nid = "tests/test_cuda_selective_scan.py::test_grid[b2-L1031-N16-K4-float16-o0-sp0-D01-mamba_ssm]"
seed = zlib.crc32(nid.encode()); random.seed(seed); torch.manual_seed(seed)
case = [c for c in tc._GRID if c[2] == 1031 and c[3] == 16 and c[5] == torch.float16 and c[0] == 2 and not c[6] and not c[7]]
print("cases", case)
for s in range(4):
    if s: torch.manual_seed(1000 + s)
    tc._check(ops, *case[0], ranges="mamba_ssm")
