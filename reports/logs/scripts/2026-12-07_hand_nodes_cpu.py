"""What the extension's C++ autograd nodes cost per call on the CPU (run from a tree with its extension built).

Raw kernels registered with _C.register_py_kernels that only allocate their outputs (as a GPU kernel's launch
does) stand in for the GPU kernels; "direct" calls them from Python, "node, grad" through the extension's node with
inputs that require grad, "node, no_grad" the same under torch.no_grad(). us per call, min of 5 x 20000."""
import time

import torch

from vmamba_kernels import _C


def best_us(fn, n=20000):
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n * 1e6)
    return best


e = torch.empty
rg = lambda *s: torch.randn(*s).requires_grad_()  # noqa: E731
b, KD, L, N, K = 1, 16, 8, 1, 4


def scan_fwd(*a):
    return e(b, KD, L), e(b, KD, N), e(b, KD, 1, N)


def ln_fwd(x, *a):
    st = e((1, 196))
    return e(x.shape), torch.empty_like(x), st, torch.empty_like(st)


def dw_fwd(x, *a):
    return torch.empty_like(x)


def none(*a):
    return None


ks = _C.register_py_kernels(scan_fwd, none, none, none, ln_fwd, none, dw_fwd, none, True)
scan_args = (rg(b, KD, L), rg(b, KD, L), rg(KD, N), rg(b, K, N, L), rg(b, K, N, L), rg(KD), rg(KD), True,
             torch.float32)
ln_args = (rg(1, 14, 14, 32), rg(1, 14, 14, 32), rg(32), rg(32), None, 1e-5, True, None)
dw_args = (rg(1, 14, 14, 32), rg(32, 1, 3, 3), rg(32), "silu", True)
cases = (("selective_scan", scan_fwd, _C.selective_scan_fwd_pyautograd, scan_args),
         ("add_layer_norm", ln_fwd, _C.add_layer_norm_fwd_pyautograd, ln_args),
         ("dwconv2d", dw_fwd, _C.dwconv2d_fwd_pyautograd, dw_args))
print(f"torch {torch.__version__}; torch.add with grad {best_us(lambda: torch.add(scan_args[0], scan_args[1])):.2f} us")
print("op | direct | node, grad | node, no_grad | node cost with grad (grad - direct)")
for name, direct, node, args in cases:
    d = best_us(lambda: direct(*args))
    g = best_us(lambda: node(ks, *args))
    with torch.no_grad():
        ng = best_us(lambda: node(ks, *args))
    print(f"{name} | {d:.2f} | {g:.2f} | {ng:.2f} | {g - d:.2f}")
