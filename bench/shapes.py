"""VMamba stage shapes of the selective scan and cross scan, per model variant.

For stage i of a variant with base width d, ssm_ratio r and d_state N at image size S (patch 4):
C_i = d * 2^i, D_i = int(r * C_i) (d_inner), K = 4 directions, KD = 4 * D_i, H = W = S / 4 / 2^i (rounded up),
L = H * W. The scan sees u/delta (batch, KD, L), A (KD, N), B/C (batch, 4, N, L); the cross scan
sees (batch, D_i, H, W).

Shapes are read from a built model when `models` is importable (each stage's mixer gives d_inner and
d_state), else from the table below (the official builders' configs).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

# name -> (base dim, ssm_ratio, d_state); names: the models package's aliases and the official builders
VARIANTS = {
    "vmamba_t": (96, 1.0, 1), "vmamba_s": (96, 2.0, 1), "vmamba_b": (128, 2.0, 1),
    "vmamba_tiny_s1l8": (96, 1.0, 1), "vmamba_small_s2l15": (96, 2.0, 1), "vmamba_base_s2l15": (128, 2.0, 1),
    "vmamba_tiny_s2l5": (96, 2.0, 1), "vmamba_small_s1l20": (96, 1.0, 1), "vmamba_base_s1l20": (128, 1.0, 1),
    "vanilla_vmamba_tiny": (96, 2.0, 16), "vanilla_vmamba_small": (96, 2.0, 16), "vanilla_vmamba_base": (128, 2.0, 16),
}
K = 4


@dataclass(frozen=True)
class StageShape:
    model: str
    stage: int
    batch: int
    D: int       # d_inner of the stage
    N: int       # d_state
    H: int
    W: int

    @property
    def KD(self) -> int:
        return K * self.D

    @property
    def L(self) -> int:
        return self.H * self.W

    def scan_label(self) -> str:
        return f"B{self.batch} KD{self.KD} L{self.L} N{self.N} K{K}"

    def cross_label(self) -> str:
        return f"B{self.batch} D{self.D} H{self.H} W{self.W}"


def stage_sizes(img_size: int) -> list:
    """Map side per stage: the stem divides by 4 and each downsample (stride-2 conv, padding 1) by 2,
    rounding up as those convolutions do."""
    h = -(-img_size // 4)
    out = []
    for _ in range(4):
        out.append(h)
        h = -(-h // 2)
    return out


def _from_table(model: str, batch: int, img_size: int) -> list:
    if model not in VARIANTS:
        raise KeyError(f"no stage shapes for {model!r}; known: {', '.join(sorted(VARIANTS))}")
    d, r, n = VARIANTS[model]
    out = []
    for i, h in enumerate(stage_sizes(img_size)):
        out.append(StageShape(model, i, batch, int(r * d * 2 ** i), n, h, h))
    return out


def _from_models(model: str, batch: int, img_size: int):
    """Shapes from a built model's mixers ('layers.{i}.' prefixes), or None."""
    per_stage = _model_stage_dims(model)
    if per_stage is None:
        return None
    out = []
    for i, h in enumerate(stage_sizes(img_size)):
        D, N = per_stage[i]
        out.append(StageShape(model, i, batch, D, N, h, h))
    return out


@functools.lru_cache(maxsize=None)
def _model_stage_dims(model: str):
    """{stage: (d_inner, d_state)} read from a built model's mixers (the modules with d_inner and d_state
    attributes under layers.{i}.; cached: building B takes seconds), or None. The mixers' attributes,
    not parameter shapes: the mamba2-style mixer keeps A_logs per head, (K, heads), while its scan runs
    over (K * d_inner, d_state) like the others."""
    try:
        import models  # noqa: PLC0415

        m = models.create_model(model, impl="torch")
    except Exception:  # noqa: BLE001 (no models package yet, or unknown name)
        return None
    per_stage = {}
    for name, mod in m.named_modules():
        if not (hasattr(mod, "d_inner") and hasattr(mod, "d_state")) or "layers." not in f".{name}":
            continue
        try:
            stage = int(f".{name}".split(".layers.")[1].split(".")[0])
        except (IndexError, ValueError):
            continue
        per_stage.setdefault(stage, (int(mod.d_inner), int(mod.d_state)))
    if sorted(per_stage) != [0, 1, 2, 3]:
        return None
    return per_stage


def stage_shapes(model: str, batch: int = 128, img_size: int = 224, prefer_models: bool = True) -> list:
    """The four StageShapes of `model` (see module docstring)."""
    if prefer_models:
        got = _from_models(model, batch, img_size)
        if got is not None:
            return got
    return _from_table(model, batch, img_size)
