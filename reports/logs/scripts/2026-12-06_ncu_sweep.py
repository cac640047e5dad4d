# one VMamba-T stage forward of the fused core (fp16, channels-last, b128) for ncu: python .gpu/ncu_sweep.py STAGE
import sys, torch
from vmamba_kernels.cuda import extension as ext
from tests.test_cuda_ss2d_core import make_case
st = int(sys.argv[1])
D, H, R = {1: (96, 56, 6), 2: (192, 28, 12), 3: (384, 14, 24), 4: (768, 7, 48)}[st]
x, xdbl, dt_w, A, Dp, bias = make_case(128, D, H, H, 1, R, 4, torch.float16, channels_last=True)
xdbl = xdbl.half()
for _ in range(2):
    ext.ss2d_core_fwd(x, xdbl, dt_w, A, Dp, bias, "cross2d", True, True, torch.float16)
torch.cuda.synchronize()
