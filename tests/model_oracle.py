"""The model oracle's shared pieces: seeded weights per state_dict key, the seeded input, the variants.

Used by tests/tools/record_official_logits.py (which runs the official VMamba code and writes
tests/data/official_logits.json) and by tests/test_models_oracle.py (which runs models/ on the same
weights and input). Both sides generate every tensor from its key and shape alone, so the weights do not
depend on either model's init, on parameter order, or on anything but this file and torch's CPU
generator (the recorded fingerprint catches a change of either).

Scales keep activations sane at any depth: LayerNorm weights near 1, projections at 1/sqrt(fan-in),
A = -exp(A_logs) in [-16, -0.37] (VMamba's range), delta_bias so that softplus sees negative and
positive inputs, D near 1.
"""
from __future__ import annotations

import math
import zlib

import torch

SEED = 20261128
IMAGE = (2, 3, 32, 96)  # non-square: stage maps 8x24, 4x12, 2x6, 1x3 (a transposed route shows; no stage
# has a power-of-two L <= 64, where the official m0 torch fallback fails to view its one-chunk SSD output)

# (our model name, channel_first) -> the official builder and its argument. v2 variants run both
# layouts in the official code (ln2d / ln); v0 and m0 are channel-last only.
VARIANTS = {
    "vmamba_tiny_s1l8-cf": ("vmamba_tiny_s1l8", True),
    "vmamba_tiny_s1l8-cl": ("vmamba_tiny_s1l8", False),
    "vmamba_tiny_s2l5-cf": ("vmamba_tiny_s2l5", True),
    "vanilla_vmamba_tiny": ("vanilla_vmamba_tiny", None),
    "vmamba_tiny_m2": ("vmamba_tiny_m2", None),
}


def _draw(key: str, shape, kind: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed ^ zlib.crc32(key.encode()))
    if kind == "uniform":
        return torch.rand(shape, generator=g).double()
    return torch.randn(shape, generator=g).double()


def oracle_tensor(key: str, shape, seed: int = SEED) -> torch.Tensor:
    """The float32 value of parameter `key` of this `shape`: a function of the two alone."""
    shape = tuple(int(s) for s in shape)
    name = key.rsplit(".", 1)[-1]
    if name == "A_logs":  # A = -exp(A_logs) in [-16, -e^-1]
        t = -1.0 + (math.log(16.0) + 1.0) * _draw(key, shape, "uniform", seed)
    elif name == "Ds":
        t = 0.5 + _draw(key, shape, "uniform", seed)
    elif name == "dt_projs_bias":  # softplus^-1 of VMamba's dt init is [-6.9, -2.3]; wider, to both signs
        t = -6.0 + 7.0 * _draw(key, shape, "uniform", seed)
    elif len(shape) == 1 and name == "weight":  # LayerNorm scales
        t = 1.0 + 0.1 * _draw(key, shape, "normal", seed)
    elif len(shape) == 1:  # biases
        t = 0.1 * _draw(key, shape, "normal", seed)
    else:  # projections and convs: (K, out, in) stacks take their last axis as fan-in
        fan_in = shape[-1] if len(shape) == 3 else math.prod(shape[1:])
        t = _draw(key, shape, "normal", seed) / math.sqrt(fan_in)
    return t.to(torch.float32)


def oracle_state_dict(reference: dict, seed: int = SEED) -> dict:
    """{key: oracle_tensor(key, shape)} for every key of `reference` (a state_dict)."""
    return {k: oracle_tensor(k, v.shape, seed) for k, v in reference.items()}


def fingerprint(state: dict) -> list:
    """[number of tensors, number of elements, sum, sum of |x| * (1 + position in its key's order)]:
    changes when a key, a shape, the generator or the scales change."""
    n = sum(v.numel() for v in state.values())
    s = sum(float(v.double().sum()) for v in state.values())
    w = sum(float(v.double().abs().sum()) * (i + 1) for i, (_, v) in enumerate(sorted(state.items())))
    return [len(state), n, s, w]


def oracle_input(seed: int = SEED) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(IMAGE, generator=g)
