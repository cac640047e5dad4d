# segfault hunt: each bad call of vss_stage_infer in its own process
import subprocess, sys
cases = {
 "slots5": "run(x, [None] * 5, [1e-5] * 3, [3], 'silu', 'none', torch.float32)",
 "slot0": "run(x, [None] * 23, [1e-5] * 3, [3], 'silu', 'none', torch.float32)",
 "relu": "run(x, [None] * 23, [1e-5] * 3, [3], 'relu', 'none', torch.float32)",
 "cpu": "run(x.cpu(), [None] * 23, [1e-5] * 3, [3], 'silu', 'none', torch.float32)",
 "noblocks": "run(x, [], [], [], 'silu', 'none', torch.float32)",
 "eps": "run(x, [None] * 23, [1e-5] * 2, [3], 'silu', 'none', torch.float32)",
}
pre = ("import faulthandler; faulthandler.enable(); import torch; from vmamba_kernels import _C; "
       "run = _C.vss_stage_infer; x = torch.randn(1, 7, 7, 16, device='cuda')\n"
       "try:\n    {}\nexcept Exception as e:\n    print('RAISED', type(e).__name__, str(e)[:160].replace(chr(10), ' '))\n")
for name, call in cases.items():
    r = subprocess.run([sys.executable, "-c", pre.format(call)], capture_output=True, text=True)
    print(name, "rc", r.returncode, r.stdout.strip()[:200], r.stderr.strip().splitlines()[:2] if r.returncode else "")
