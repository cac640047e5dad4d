"""Mutants of reference/selective_scan.py, the float64 oracle of the selective scan (its sequential and log-depth
forms, the affine-scan primitives and the closed-form backward the torch backends use).
Campaign of 2026-12-07: S16 survived tests/test_reference.py and tests/test_scan_attention.py (36 of 37 killed);
tests/test_reference_oracle.py kills it (all 37 now).
Run: python -m tests.tools.mutate tests/tools/mutants/reference_selective_scan.py"""

FILE = "reference/selective_scan.py"
TESTS = ["tests/test_reference.py", "tests/test_scan_attention.py", "tests/test_reference_oracle.py"]

_MOD_K = "torch.arange(KD, device=B.device).view(K, G) % K"  # channel d -> group d % K (instead of d // G)

# (id, old text, new text, what the mutant breaks[, occurrence of old from 0])
MUTANTS = [
    # _prepare / _finish (shared by both forwards and the backward)
    ('S01', 'return torch.float64 if u.dtype == torch.float64 else torch.float32', 'return torch.float32',
     'float64 inputs computed in float32 (the oracle loses its float64 claim)'),
    ('S02', 'dt = dt + delta_bias.to(ct)[None, :, None]', 'dt = dt', 'delta_bias dropped'),
    ('S03', 'dt = dt + delta_bias.to(ct)[None, :, None]', 'dt = dt + 2 * delta_bias.to(ct)[None, :, None]',
     'delta_bias added twice'),
    ('S04', '    if delta_bias is not None:\n        dt = dt + delta_bias.to(ct)[None, :, None]\n'
            '    if delta_softplus:\n        dt = F.softplus(dt)',
     '    if delta_softplus:\n        dt = F.softplus(dt)\n'
     '    if delta_bias is not None:\n        dt = dt + delta_bias.to(ct)[None, :, None]',
     'delta_bias added after the softplus instead of before'),
    ('S05', '    if delta_softplus:\n        dt = F.softplus(dt)', '    if True:\n        dt = F.softplus(dt)',
     'softplus applied even when delta_softplus is False'),
    ('S06', 'dt = F.softplus(dt)  #', 'dt = dt  #', 'softplus never applied'),
    ('S07', 'dt = F.softplus(dt)  #', 'dt = F.softplus(dt, threshold=10)  #', 'softplus threshold 10 instead of 20'),
    ('S08', 'y = y + D[None, :, None] * u', 'y = y', 'D skip term dropped'),
    ('S09', 'y.to(out_dtype if out_dtype is not None else orig_dtype)', 'y.to(orig_dtype)', 'out_dtype ignored'),
    # selective_scan_ref (sequential)
    ('S10', 'x = torch.exp(dt_t * A4) * x', 'x = torch.exp(A4) * x', 'ref: decay exp(A) instead of exp(dt*A)'),
    ('S11', '+ dt_t * u_t * B[:, :, None, :, t]', '+ u_t * B[:, :, None, :, t]', 'ref: input term without dt'),
    ('S12', 'ys.append((x * C[:, :, None, :, t])', 'ys.append((x * C[:, :, None, :, t - 1])',
     'ref: output reads C one step late (off by one)'),
    ('S13', '        x = torch.exp(dt_t * A4) * x + dt_t * u_t * B[:, :, None, :, t]\n'
            '        ys.append((x * C[:, :, None, :, t]).sum(-1).view(batch, KD))',
     '        ys.append((x * C[:, :, None, :, t]).sum(-1).view(batch, KD))\n'
     '        x = torch.exp(dt_t * A4) * x + dt_t * u_t * B[:, :, None, :, t]',
     'ref: y_t read from the state before step t (x_{t-1})'),
    ('S14', 'u_t * B[:, :, None, :, t]', f'u_t * B[:, {_MOD_K}, :, t]', 'ref: B group of channel d is d % K'),
    ('S15', 'x = u.new_zeros(batch, K, G, N)', 'x = u.new_ones(batch, K, G, N)', 'ref: initial state 1, not 0'),
    ('S16', 'return y, x.reshape(batch, KD, N).to(A.dtype)', 'return y, x.reshape(batch, KD, N).to(orig)',
     "ref: last state in u's dtype, not A's"),
    ('S17', 'for t in range(L):\n        dt_t', 'for t in range(max(L - 1, 1)):\n        dt_t',
     'ref: loop stops one step early'),
    # selective_scan_parallel
    ('S18', 'a = torch.exp(dt5 * A.view(1, K, G, N, 1))', 'a = torch.exp(A.view(1, K, G, N, 1))',
     'parallel: decay exp(A) instead of exp(dt*A)'),
    ('S19', '* B[:, :, None]  # B:', f'* B[:, {_MOD_K}]  # B:', 'parallel: B group of channel d is d % K'),
    ('S20', 'y = (h * C[:, :, None]).sum(3)', 'y = (h * C[:, :1, None]).sum(3)',
     'parallel: every channel reads group 0 C'),
    ('S21', 'last = h[..., -1] if L > 0', 'last = h[..., -2] if L > 1', 'parallel: last state one step early'),
    # affine_scan / affine_scan_sequential
    ('S22', 'a[..., k:] * b[..., :-k] + b[..., k:]', 'a[..., :-k] * b[..., :-k] + b[..., k:]',
     'affine_scan: composes with the wrong decay'),
    ('S23', 'while k < L:', 'while k < L - 1:', 'affine_scan: last doubling level skipped (L = 2^m + 1)'),
    ('S24', 'return affine_scan(a.flip(-1), b.flip(-1)).flip(-1)', 'return affine_scan(a, b.flip(-1)).flip(-1)',
     'affine_scan reverse: decays not flipped'),
    ('S25', 'range(L - 1, -1, -1) if reverse', 'range(L - 1, 0, -1) if reverse',
     'affine_scan_sequential reverse: misses t = 0'),
    ('S26', 'h = a[..., t] * h + b[..., t]', 'h = a[..., t - 1] * h + b[..., t]',
     'affine_scan_sequential: decay one step early'),
    # selective_scan_backward_ref
    ('S27', 'a_next = torch.cat([a[..., 1:], torch.zeros_like(a[..., :1])], dim=-1)', 'a_next = a',
     'backward: adjoint decays not shifted (a_t instead of a_{t+1})'),
    ('S28', 'g = scan(a_next, Cg * dy, reverse=True)', 'g = scan(a_next, Cg * dy)',
     'backward: adjoint scan runs forwards'),
    ('S29', 'q = g * a * h_prev', 'q = g * a * h', 'backward: dA/ddt use h_t instead of h_{t-1}'),
    ('S30', 'dA = (q * dt5).sum(dim=(0, 4))', 'dA = q.sum(dim=(0, 4))', 'backward: dA without the dt factor'),
    ('S31', 'ddt = (q * A5).sum(3) + (g * Bg).sum(3)', 'ddt = (g * Bg).sum(3)', 'backward: ddt misses the decay term'),
    ('S32', 'dB = (g * dt5 * u5).sum(2)', 'dB = (g * dt5 * u5).mean(2)',
     "backward: dB averaged, not summed, over a group's channels"),
    ('S33', 'du = du + Dc[None, :, None] * dout.to(ct)', 'du = du', 'backward: du misses the D skip term'),
    ('S34', 'dD = (dout.to(ct) * uc).sum(dim=(0, 2))', 'dD = (dout.to(ct) * dt).sum(dim=(0, 2))',
     'backward: dD from dt instead of u'),
    ('S35', 'torch.where(pre <= 20, torch.sigmoid(pre)', 'torch.where(pre < 20, torch.sigmoid(pre)',
     'backward: softplus derivative threshold at 20 taken as the identity side'),
    ('S36', 'torch.sigmoid(pre)', 'torch.sigmoid(delta.to(ct))', 'backward: softplus derivative ignores delta_bias'),
    ('S37', 'dbias = None if delta_bias is None else ddt.sum(dim=(0, 2))',
     'dbias = None if delta_bias is None else ddt.sum(dim=(0, 2)) / batch',
     'backward: ddelta_bias averaged over batch'),
]
