"""Mutants of reference/norms.py, the oracle of the residual add + LayerNorm (add_layer_norm).
Campaign of 2026-12-07: N04, N05, N07, N08 and N10 survived tests/test_norm_kernels.py (7 of 12 killed);
tests/test_reference_oracle.py kills them (all 12 now).
Run: python -m tests.tools.mutate tests/tools/mutants/reference_norms.py"""

FILE = "reference/norms.py"
TESTS = ["tests/test_norm_kernels.py", "tests/test_reference_oracle.py"]

# (id, old text, new text, what the mutant breaks[, occurrence of old from 0])
MUTANTS = [
    ('N01', 'bias.to(ct), eps)', 'bias.to(ct), 0.0)', 'eps dropped'),
    ('N02', 'None if bias is None else bias.to(ct), eps)', 'None, eps)', 'bias dropped'),
    ('N03', 'b = b * branch_scale.to(ct).view(-1, *([1] * (x.dim() - 1)))', 'b = b', 'branch_scale dropped'),
    ('N04', 'return (x.to(ct) + b).to(x.dtype)', 'return x.to(ct) + b',
     "s not rounded to x's dtype (y normalises the unrounded sum, s comes back in float32)"),
    ('N05', 'return torch.float64 if dtype == torch.float64 else torch.float32', 'return dtype',
     "statistics in x's dtype (16-bit) instead of float32"),
    ('N06', 'return torch.float64 if dtype == torch.float64 else torch.float32', 'return torch.float32',
     'float64 inputs normalised in float32 (the oracle loses its float64 claim)'),
    ('N07', 'return y.to(out_dtype or x.dtype), s', 'return y.to(x.dtype), s', 'out_dtype ignored'),
    ('N08', 'weight.to(ct)', "weight.to(x.dtype).to(ct)", "weight rounded to x's 16-bit dtype first"),
    ('N09', 'sc = sc.movedim(1, -1)', 'sc = sc.transpose(1, -1)',
     'channels-first: channels moved last by a transpose (H and W swapped)'),
    ('N10', 'b = branch.to(ct)', 'b = branch.to(x.dtype).to(ct)', "branch rounded to x's dtype before the add"),
    ('N11', 'return (x.to(ct) + b).to(x.dtype)', 'return (x.to(ct) + b).to(x.dtype) if branch_scale is None else x',
     'scaled branch: residual add skipped'),
    ('N12', 'if branch is None:\n        return x', 'if branch is None:\n        return x.clone()',
     'no branch: s is a copy, not x itself'),
]
