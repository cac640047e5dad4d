"""GPU call 74: what autograd.Function costs per call on this host (torch 2.11), on CUDA and CPU tensors, with
torch's Python Function.apply and with the C _FunctionBase.apply; and a few per-call pieces."""
import sys, timeit
import torch
print("torch", torch.__version__, file=sys.stderr)
n = 10000


def t(f):
    f()
    return round(min(timeit.repeat(f, number=n, repeat=3)) / n * 1e6, 2)


for dev in ("cuda", "cpu"):
    E = lambda *s, dt=torch.float16: torch.empty(*s, dtype=dt, device=dev)  # noqa: E731
    rg = lambda x: x.requires_grad_()  # noqa: E731
    u, d = rg(E(1, 384, 196)), rg(E(1, 384, 196))
    A, B, C = rg(E(384, 1, dt=torch.float32)), rg(E(1, 4, 1, 196)), rg(E(1, 4, 1, 196))
    D, bias = rg(E(384, dt=torch.float32)), rg(E(384, dt=torch.float32))

    def body(*a):
        return E(1, 384, 196), E(1, 384, 1, dt=torch.float32), E(1, 384, 1, 1, dt=torch.float32)

    def forward(ctx, *args):
        out = body(*args)
        ctx.save_for_backward(*args[:7], out[2])
        ctx.flag = args[7]
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(out[1], out[2])
        return out

    F = type("F", (torch.autograd.Function,), {"forward": staticmethod(forward),
                                               "backward": staticmethod(lambda ctx, *g: (None,) * 9)})
    capply = super(torch.autograd.Function, F).apply
    args = (u, d, A, B, C, D, bias, True, torch.float16)
    row = {"body": t(lambda: body(*args)), "Function.apply": t(lambda: F.apply(*args)),
           "C apply": t(lambda: capply(*args))}
    with torch.no_grad():
        row["apply no_grad"] = t(lambda: F.apply(*args))
    x = E(1, 384, 14, 14)
    row["empty"] = t(lambda: E(1, 384, 196))
    row["contiguous"] = t(lambda: x.contiguous())
    row["data_ptr"] = t(lambda: x.data_ptr())
    print(dev, row)
