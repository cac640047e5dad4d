"""Mutants of reference/dwconv.py, the oracle of the depthwise KxK conv + bias + activation (dwconv2d).
Campaign of 2026-12-07: W08 and W09 survived tests/test_dwconv_kernels.py (9 of 11 killed);
tests/test_reference_oracle.py kills them (all 11 now).
Run: python -m tests.tools.mutate tests/tools/mutants/reference_dwconv.py"""

FILE = "reference/dwconv.py"
TESTS = ["tests/test_dwconv_kernels.py", "tests/test_reference_oracle.py"]

# (id, old text, new text, what the mutant breaks[, occurrence of old from 0])
MUTANTS = [
    ('W01', 'z = F.conv2d(xc, weight.to(ct), None if bias is None else bias.to(ct), padding=K // 2, groups=C)',
     'z = F.conv2d(F.pad(xc, [K // 2] * 4, mode="replicate"), weight.to(ct), None if bias is None else bias.to(ct),'
     ' groups=C)', 'replicate padding instead of zero padding'),
    ('W02', 'None if bias is None else bias.to(ct), padding', 'None, padding', 'bias dropped'),
    ('W03', 'F.conv2d(xc, weight.to(ct)', 'F.conv2d(xc, weight.flip(-1, -2).to(ct)',
     'true convolution (flipped kernel) instead of cross-correlation'),
    ('W04', 'return F.gelu(z)', 'return F.gelu(z, approximate="tanh")', 'tanh-approximate GELU instead of erf GELU'),
    ('W05', 'return F.silu(z)', 'return z * torch.sigmoid(1.702 * z)',
     'silu replaced by the sigmoid GELU approximation'),
    ('W06', 'y = activation(z, act)', 'y = activation(z, act) if act != "gelu" else activation(z, "silu")',
     'act "gelu" runs silu'),
    ('W07', 'ct = torch.float64 if x.dtype == torch.float64 else torch.float32', 'ct = torch.float32',
     'float64 inputs convolved in float32 (the oracle loses its float64 claim)'),
    ('W08', 'ct = torch.float64 if x.dtype == torch.float64 else torch.float32', 'ct = x.dtype',
     "16-bit inputs convolved in their own dtype instead of float32"),
    ('W09', 'return y.to(x.dtype)', 'return y', 'result in the compute dtype, not x\'s'),
    ('W10', 'xc = xc.movedim(-1, 1)', 'xc = xc.transpose(1, -1)',
     'channels_last: H and W swapped on the way in (and back out)'),
    ('W11', 'z = F.conv2d(xc, weight.to(ct), None if bias is None else bias.to(ct), padding=K // 2, groups=C)\n'
            '    y = activation(z, act)',
     'z = F.conv2d(xc, weight.to(ct), None, padding=K // 2, groups=C)\n'
     '    y = activation(z, act)\n    y = y if bias is None else y + bias.to(ct)[:, None, None]',
     'bias added after the activation'),
]
