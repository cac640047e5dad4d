"""Mutants of reference/ss2d_core.py, the unfused float64 chain that defines the SS2D core.
Campaign of 2026-12-07: R06 survived tests/test_bench_sanitize.py (11 of 12 killed); tests/test_reference_oracle.py
kills it (all 12 now).
Run: python -m tests.tools.mutate tests/tools/mutants/reference_ss2d_core.py"""

FILE = "reference/ss2d_core.py"
TESTS = ["tests/test_bench_sanitize.py", "tests/test_reference_oracle.py"]

# (id, old text, new text, what the mutant breaks[, occurrence of old from 0])
MUTANTS = [
    ('R01', 'dts, Bs, Cs = torch.split', 'dts, Cs, Bs = torch.split', 'B and C projections swapped'),
    ('R02', 'xs = cross_scan_ref(x, mode, channels_last)', 'xs = cross_scan_ref(x, "cross2d", channels_last)',
     'mode not passed to the cross scan'),
    ('R03', 'H, W, mode, channels_last)', 'H, W, "cross2d", channels_last)', 'mode not passed to the cross merge'),
    ('R04', '(x.shape[1], x.shape[2]) if channels_last', '(x.shape[2], x.shape[1]) if channels_last',
     'channels_last: H and W swapped'),
    ('R05', 'delta_bias, delta_softplus,', 'delta_bias, True,', 'delta_softplus not passed (always softplus)'),
    ('R06', 'out_dtype=out_dtype if out_dtype is not None else x.dtype', 'out_dtype=x.dtype', 'out_dtype ignored'),
    ('R07', 'xs, x_proj_weight.to(xs.dtype))', 'xs, x_proj_weight.flip(0).to(xs.dtype))',
     "x_proj_weight: route k uses route 3-k's projection"),
    ('R08', 'dts, dt_projs_weight.to(xs.dtype))', 'dts, dt_projs_weight.flip(0).to(xs.dtype))',
     "dt_projs_weight: route k uses route 3-k's projection"),
    ('R09', 'A, Bs, Cs, D, delta_bias', 'A, Bs, Cs, None, delta_bias', 'D dropped', 1),
    ('R10', 'A, Bs, Cs, D, delta_bias', 'A, Bs, Cs, D, None', 'delta_bias dropped', 1),
    ('R11', 'torch.split(x_dbl, [R, N, N], dim=2)', 'torch.split(x_dbl.flip(2), [R, N, N], dim=2)',
     'projection rows read from the end (dt rows taken from C)'),
    ('R12', 'cross_merge_ref(ys.view(Bn, K, Dc, L)', 'cross_merge_ref(ys.view(Bn, Dc, K, L).transpose(1, 2)',
     'scan output read channel-major (route k, channel d at d*K + k instead of k*Dc + d)'),
]
