"""VMamba classification models and backbones (pure PyTorch on vmamba_kernels ops).

Module and parameter names follow the official classification model (MzeroMiko/VMamba,
classification/models/vmamba.py), so `state_dict()` keys and shapes are the official ones and the
released checkpoints load with strict=True (tests/test_models.py pins the key names and shapes).
"""
from __future__ import annotations

import fnmatch
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.utils.checkpoint as torch_checkpoint

from . import policy as _policy
from .fused import OFF, add_norm, autocast_dtype, scaled
from . import cpp_stages, weight_cache
from .layers import Conv2d, DropPath, LayerNorm, Linear, Mlp, PatchMerging2D, Permute, act_layer, norm_layer
from .ss2d import K, make_ss2d


@dataclass(frozen=True)
class VMambaConfig:
    """Everything that defines a variant (names follow the official VSSM arguments)."""

    depths: tuple = (2, 2, 9, 2)
    dims: int = 96  # width of stage 0; stage i has dims * 2**i
    ssm_d_state: int = 16
    ssm_ratio: float = 2.0
    ssm_dt_rank: object = "auto"
    ssm_act_layer: str = "silu"
    ssm_conv: int = 3
    ssm_conv_bias: bool = True
    ssm_drop_rate: float = 0.0
    ssm_init: str = "v0"
    forward_type: str = "v0"
    mlp_ratio: float = 0.0
    mlp_act_layer: str = "gelu"
    mlp_drop_rate: float = 0.0
    drop_path_rate: float = 0.2
    norm_layer: str = "ln"  # "ln": the model runs channels last (B, H, W, C); "ln2d": channels first (B, C, H, W)
    downsample_version: str = "v1"
    patchembed_version: str = "v1"
    patch_size: int = 4
    in_chans: int = 3
    num_classes: int = 1000

    @property
    def channels_last(self) -> bool:
        """The activations' layout between modules: (B, H, W, C) when True, (B, C, H, W) when False."""
        return self.norm_layer.lower() != "ln2d"

    @property
    def stage_dims(self) -> list:
        return [int(self.dims * 2 ** i) for i in range(len(self.depths))]


# ---- blocks --------------------------------------------------------------------------------------
class VSSBlock(nn.Module):
    """x + DropPath(SS2D(norm(x))), then x + DropPath(Mlp(norm2(x))) when mlp_ratio > 0.
    One DropPath module serves both branches (a fresh mask per call), as the official."""

    def __init__(self, dim: int, drop_path: float, cfg: VMambaConfig):
        super().__init__()
        Norm = norm_layer(cfg.norm_layer)
        cl = cfg.channels_last
        self.norm = Norm(dim)
        self.op = make_ss2d(cfg.forward_type, cl, d_model=dim, d_state=cfg.ssm_d_state, ssm_ratio=cfg.ssm_ratio,
                            dt_rank=cfg.ssm_dt_rank, act_layer=act_layer(cfg.ssm_act_layer), d_conv=cfg.ssm_conv,
                            conv_bias=cfg.ssm_conv_bias, dropout=cfg.ssm_drop_rate, ssm_init=cfg.ssm_init)
        self.drop_path = DropPath(drop_path)
        self.mlp_branch = cfg.mlp_ratio > 0
        if self.mlp_branch:
            self.norm2 = Norm(dim)
            self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), act_layer(cfg.mlp_act_layer), cfg.mlp_drop_rate, cl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.op(self.norm(x)))
        if self.mlp_branch:
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x

    def forward_fused(self, x: torch.Tensor, pending: Optional[torch.Tensor] = None,
                      pending_scale: Optional[torch.Tensor] = None):
        """The same block with each residual add fused into the norm that follows it.

        x is the residual stream *before* the previous block's last branch output `pending` (times its
        drop-path factor `pending_scale`) was added; returns (x, pending, pending_scale) for the next block.
        The stream keeps its dtype (float32 under autocast, as the reference); the branch inputs are
        written in the autocast dtype, which the projections after them would cast to anyway."""
        out = autocast_dtype(x)
        y, x = add_norm(self.norm, x, pending, pending_scale, channels_last=self.norm.channels_last,
                        out_dtype=out, impl=self.norm.impl, call=self.op._call, note=self.op._note_norm)
        h = self.op(y)
        scale = self.drop_path.sample_scale(h)
        if self.mlp_branch:
            y, x = add_norm(self.norm2, x, h, scale, channels_last=self.norm2.channels_last,
                            out_dtype=out, impl=self.norm2.impl, call=self.op._call, note=self.op._note_norm)
            h = self.mlp(y)
            scale = self.drop_path.sample_scale(h)
        return x, h, scale


class VSSStage(nn.Module):
    """`blocks` then `downsample` (Identity in the last stage); optional gradient checkpointing of the blocks."""

    def __init__(self, blocks: nn.Sequential, downsample: nn.Module):
        super().__init__()
        self.blocks = blocks
        self.downsample = downsample
        self.grad_checkpointing = False
        self.cpp_stages = False

    def _run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        if not any(b.norm.impl != OFF for b in self.blocks):
            return self.blocks(x)
        pending = scale = None
        for blk in self.blocks:
            x, pending, scale = blk.forward_fused(x, pending, scale)
        return x if pending is None else x + scaled(pending, scale)

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return torch_checkpoint.checkpoint(self._run_blocks, x, use_reentrant=False)
        if self.cpp_stages:  # VSSM.set_cpp_stages: inference in C++ where the plan allows (models/cpp_stages.py)
            return cpp_stages.run(self, x, self._run_blocks)
        return self._run_blocks(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.forward_blocks(x))


def _patch_embed(cfg: VMambaConfig, dim: int) -> nn.Sequential:
    Norm, cl, p = norm_layer(cfg.norm_layer), cfg.channels_last, cfg.patch_size
    to_last = Permute(0, 2, 3, 1) if cl else nn.Identity()
    if cfg.patchembed_version == "v1":
        return nn.Sequential(Conv2d(cfg.in_chans, dim, p, stride=p), to_last, Norm(dim))
    if cfg.patchembed_version == "v2":
        s = p // 2
        return nn.Sequential(
            Conv2d(cfg.in_chans, dim // 2, s + 1, stride=s, padding=1),
            Permute(0, 2, 3, 1) if cl else nn.Identity(),
            Norm(dim // 2),
            Permute(0, 3, 1, 2) if cl else nn.Identity(),
            nn.GELU(),
            Conv2d(dim // 2, dim, s + 1, stride=s, padding=1),
            Permute(0, 2, 3, 1) if cl else nn.Identity(),
            Norm(dim))
    raise ValueError(f"patchembed_version must be 'v1' or 'v2', got {cfg.patchembed_version!r}")


def _downsample(cfg: VMambaConfig, dim: int, out_dim: int) -> nn.Module:
    Norm, cl = norm_layer(cfg.norm_layer), cfg.channels_last
    if cfg.downsample_version == "v1":
        return PatchMerging2D(dim, out_dim, Norm, cl)
    if cfg.downsample_version in ("v2", "v3"):
        k, pad = (2, 0) if cfg.downsample_version == "v2" else (3, 1)
        return nn.Sequential(
            Permute(0, 3, 1, 2) if cl else nn.Identity(),
            Conv2d(dim, out_dim, k, stride=2, padding=pad),
            Permute(0, 2, 3, 1) if cl else nn.Identity(),
            Norm(out_dim))
    raise ValueError(f"downsample_version must be 'v1', 'v2' or 'v3', got {cfg.downsample_version!r}")


# ---- legacy names --------------------------------------------------------------------------------
def remap_legacy_state_dict(state_dict: dict, prefix: str = "", model: Optional[nn.Module] = None) -> dict:
    """Rename older checkpoint keys to the current ones, in place; returns the dict.

    Official renames (VSSM._load_from_state_dict): patch_embed.proj -> patch_embed.0,
    patch_embed.norm -> patch_embed.2, layers.i.blocks.j.ln_1 -> .norm, .self_attention -> .op,
    norm -> classifier.norm, head -> classifier.head. Also accepted: a leading 'module.' (DDP) and the
    grouped-Linear spelling of the root vmamba.py, op.x_proj.weight (K*(R+2N), D) -> op.x_proj_weight
    (K, R+2N, D) and op.dt_projs.weight (K*D, R) -> op.dt_projs_weight (K, D, R)."""
    def rename(old: str, new: str):
        key = prefix + old
        for k in [k for k in state_dict if k.startswith(key)]:
            state_dict[prefix + new + k[len(key):]] = state_dict.pop(k)

    for k in [k for k in state_dict if k.startswith(prefix + "module.")]:
        state_dict[prefix + k[len(prefix) + len("module."):]] = state_dict.pop(k)
    rename("patch_embed.proj", "patch_embed.0")
    rename("patch_embed.norm", "patch_embed.2")
    for k in list(state_dict):
        if not k.startswith(prefix + "layers."):
            continue
        new = k.replace(".ln_1.", ".norm.").replace(".self_attention.", ".op.")
        if new.endswith(".op.x_proj.weight"):
            new = new[: -len("x_proj.weight")] + "x_proj_weight"
            w = state_dict[k]
            state_dict[k] = w.view(K, -1, w.shape[-1])
        elif new.endswith(".op.dt_projs.weight"):
            new = new[: -len("dt_projs.weight")] + "dt_projs_weight"
            w = state_dict[k]
            state_dict[k] = w.view(K, -1, w.shape[-1])
        if new != k:
            state_dict[new] = state_dict.pop(k)
    for k in [k for k in state_dict if k.startswith(prefix + "norm.") or k.startswith(prefix + "head.")]:
        state_dict[prefix + "classifier." + k[len(prefix):]] = state_dict.pop(k)
    return state_dict


# ---- the model -----------------------------------------------------------------------------------
class FeatureInfo(list):
    """Per returned feature map, as timm's backbones describe theirs: dicts {num_chs, reduction, module}
    (channels, input side / map side, the stage module), with the usual accessors."""

    def channels(self) -> list:
        return [f["num_chs"] for f in self]

    def reduction(self) -> list:
        return [f["reduction"] for f in self]

    def module_name(self) -> list:
        return [f["module"] for f in self]


_HALF_DTYPES = (torch.float16, torch.bfloat16)


class VSSM(nn.Module):
    """VMamba (VSSM). Layout (`channels_last`): (B, H, W, C) between modules, or (B, C, H, W) when
    norm_layer == 'ln2d'; inputs and feature maps returned to users are NCHW.

    impl / fallback: kernel policy (models/policy.py), resolved once here; change with set_impl().
    features_only: drop the classifier, add per-stage norms outnorm{i} for i in out_indices and return
    the stage maps (before each stage's downsample) as NCHW tensors, like the official Backbone_VSSM.
    feature_info: channels, reduction and module of each map the backbone returns (every stage for a
    classifier), as timm's backbones: `model.feature_info.channels()` -> [96, 192, 384, 768].
    Inputs are checked first (`check_input`): (B, in_chans, H, W), floating point, the model's device and dtype.
    """

    def __init__(self, cfg: VMambaConfig, impl=None, fallback: bool = False, features_only: bool = False,
                 out_indices: Sequence[int] = (0, 1, 2, 3)):
        super().__init__()
        self.cfg = cfg
        self.channels_last = cfg.channels_last
        self.num_classes = cfg.num_classes
        self.dims = cfg.stage_dims
        self.num_features = self.dims[-1]
        self.num_layers = len(cfg.depths)
        dpr = [x.item() for x in torch.linspace(0, cfg.drop_path_rate, sum(cfg.depths))]
        self.patch_embed = _patch_embed(cfg, self.dims[0])
        self.layers = nn.ModuleList()
        start = 0
        for i, depth in enumerate(cfg.depths):
            blocks = nn.Sequential(*[VSSBlock(self.dims[i], dpr[start + j], cfg) for j in range(depth)])
            start += depth
            ds = _downsample(cfg, self.dims[i], self.dims[i + 1]) if i < self.num_layers - 1 else nn.Identity()
            self.layers.append(VSSStage(blocks, ds))
        Norm = norm_layer(cfg.norm_layer)
        self.features_only = bool(features_only)
        if self.features_only:
            self.out_indices = tuple(int(i) for i in out_indices)
            for i in self.out_indices:
                if not 0 <= i < self.num_layers:
                    raise ValueError(f"out_indices must be in 0..{self.num_layers - 1}, got {i}")
                self.add_module(f"outnorm{i}", Norm(self.dims[i]))
        else:
            self.out_indices = ()
            self.classifier = nn.Sequential(OrderedDict(
                norm=Norm(self.num_features),
                permute=Permute(0, 3, 1, 2) if self.channels_last else nn.Identity(),
                avgpool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(1),
                head=Linear(self.num_features, cfg.num_classes)))
        stages = self.out_indices if self.features_only and self.out_indices else range(self.num_layers)
        if self.features_only and not self.out_indices:
            stages = [self.num_layers - 1]  # the last map, after the (Identity) last downsample
        self.feature_info = FeatureInfo(
            {"num_chs": self.dims[i], "reduction": cfg.patch_size * 2 ** i, "module": f"layers.{i}"} for i in stages)
        self.apply(self._init_weights)
        self.set_impl(impl, fallback=fallback)

    @staticmethod
    def _init_weights(m: nn.Module):
        # every Linear (incl. Linear2d and the head): trunc normal std 0.02 (cut at +-2), bias 0; LayerNorm 1 / 0
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # ---- kernel policy ---------------------------------------------------------------------------
    def ss2d_layers(self):
        """(block name, SS2D module) for every mixer, e.g. ('layers.2.blocks.3', module)."""
        for i, stage in enumerate(self.layers):
            for j, blk in enumerate(stage.blocks):
                yield f"layers.{i}.blocks.{j}", blk.op

    def set_impl(self, impl=None, fallback: Optional[bool] = None) -> "VSSM":
        """Resolve `impl` (None / backend name / KernelPolicy / {glob: name|KernelPolicy}) for every
        SS2D layer and op. fallback=None keeps the current setting."""
        if fallback is None:
            fallback = getattr(self, "fallback", False)
        known = _policy._known_impls()
        resolved = {name: _policy.resolve(impl, name, fallback, known) for name, _ in self.ss2d_layers()}
        norms = {name: _policy.resolve(impl, name, fallback, known)["add_layer_norm"]
                 for name, _ in self.other_norms()}
        if isinstance(impl, dict):
            names = [n for n, _ in self.ss2d_layers()] + list(norms)
            for pattern in impl:
                if not any(fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(n + ".op", pattern) for n in names):
                    raise ValueError(f"impl pattern {pattern!r} matches no layer; layer names look like "
                                     f"{names[0]!r} or 'layers.0.downsample' (patterns use fnmatch, e.g. "
                                     f"'layers.2.blocks.*')")
        for i, stage in enumerate(self.layers):
            for j, blk in enumerate(stage.blocks):
                r = resolved[f"layers.{i}.blocks.{j}"]
                blk.op.set_resolved(r, fallback)
                for norm in (blk.norm, getattr(blk, "norm2", None)):
                    if norm is not None:
                        norm.impl, norm.fallback = r["add_layer_norm"].impl, bool(fallback)
        for name, norm in self.other_norms():
            norm.impl, norm.fallback = norms[name].impl, bool(fallback)
        self._norm_impls = norms
        self.impl, self.fallback = impl, bool(fallback)
        for stage in self.layers:  # the C++ stages' plans read what the old policy ran
            cpp_stages.clear(stage)
        return self

    def other_norms(self):
        """(policy name, LayerNorm) for the norms outside the blocks: 'patch_embed', 'layers.i.downsample',
        'classifier', 'outnorm{i}' (the policy's add_layer_norm entry for that name applies)."""
        for n, m in self.patch_embed.named_modules():
            if isinstance(m, LayerNorm):
                yield f"patch_embed.{n}", m
        for i, stage in enumerate(self.layers):
            for n, m in stage.downsample.named_modules():
                if isinstance(m, LayerNorm):
                    yield f"layers.{i}.downsample.{n}", m
        if not self.features_only:
            yield "classifier.norm", self.classifier.norm
        for i in self.out_indices:
            yield f"outnorm{i}", getattr(self, f"outnorm{i}")

    def impl_table(self, as_text: bool = False):
        """Rows {layer, op, impl, requested, ran, note}: impl is what the call passes (auto = the
        dispatcher chooses; "off" = the reference torch modules instead of a fused op), ran the backend
        that ran that op at the last eager forward ("" before one; under fallback or impl=None this is
        where to see what really ran)."""
        rows = []
        for name, op in self.ss2d_layers():
            for o in _policy.OPS:
                r = op._impl[o]
                rows.append({"layer": name, "op": o, "impl": r.impl or "auto", "requested": r.requested or "auto",
                             "ran": op._ran.get(o) or (OFF if r.impl == OFF else ""), "note": r.note})
        for name, r in self._norm_impls.items():
            norm = dict(self.other_norms())[name]
            rows.append({"layer": name, "op": "add_layer_norm", "impl": r.impl or "auto",
                         "requested": r.requested or "auto", "ran": norm.ran or "", "note": r.note})
        if not as_text:
            return rows
        w = max(len(r["layer"]) for r in rows)
        lines = [f"{'layer':{w}s}  {'op':14s}  {'impl':16s}  {'ran':16s}  note"]
        lines += [f"{r['layer']:{w}s}  {r['op']:14s}  {r['impl']:16s}  {r['ran'] or '-':16s}  {r['note']}"
                  for r in rows]
        return "\n".join(lines)

    # ---- training helpers ------------------------------------------------------------------------
    def set_grad_checkpointing(self, enable: bool = True) -> "VSSM":
        for stage in self.layers:
            stage.grad_checkpointing = bool(enable)
        return self

    # what set_recompute can rebuild; "all" is every part, "none" none
    RECOMPUTE_PARTS = ("norms", "delta", "routes", "mlp")
    RECOMPUTE = ("all", "none") + RECOMPUTE_PARTS

    @classmethod
    def recompute_parts(cls, what: str) -> frozenset:
        """The parts a set_recompute argument names ("all", "none", or parts joined by "+"); ValueError if unknown."""
        if what == "all":
            return frozenset(cls.RECOMPUTE_PARTS)
        if what == "none":
            return frozenset()
        parts = what.split("+") if isinstance(what, str) else [what]
        bad = [p for p in parts if p not in cls.RECOMPUTE_PARTS]
        if bad or not parts:
            raise ValueError(f"set_recompute: 'all', 'none' or parts of {', '.join(cls.RECOMPUTE_PARTS)} joined by "
                             f"'+' (e.g. 'norms+delta'), got {what!r}")
        return frozenset(parts)

    def set_recompute(self, what: str = "all") -> "VSSM":
        """What eager training rebuilds in the backward instead of keeping: "all" (every part), "none" (a new
        model's setting), or parts joined by "+":
        "routes": the SS2D route tensors, the cross scan's xs and the scan's delta, from x (models.chain /
        models.ss2d.RouteRecompute: one cross scan and one dt projection more per block);
        "delta": delta alone, from the small dts_low (one dt projection GEMM more per block);
        "mlp": the MLP's GELU output (one GELU more per block);
        "norms": every LayerNorm fused with an add (the blocks' norms and out_norm) keeps its output instead of
        its float32 input and rebuilds xhat = (y - bias) / weight (models/norm_node.py; no extra kernel).
        routes, delta and mlp give bitwise the same gradients; norms gives them to the rounding of the 16-bit y
        over |weight|. Memory bought with time (reports/logs/2026-12-04_training_memory_H200.md), so off
        unless asked for, like set_grad_checkpointing. Eager only: torch.compile sees the plain ops."""
        parts = self.recompute_parts(what)
        for m in self.modules():
            if isinstance(m, Mlp):
                m.recompute_act = "mlp" in parts
            elif hasattr(m, "recompute_routes"):
                m.recompute_routes = "routes" in parts
                m.recompute_delta = "delta" in parts
            elif isinstance(m, LayerNorm):
                m.recompute_from_output = "norms" in parts
        return self

    def set_weight_cache(self, on: bool = True) -> "VSSM":
        """Inference (grad disabled, eager) keeps each layer's autocast weight casts, and A = -exp(A_logs),
        across forwards instead of casting again every call: the same values, 70 operators fewer per VMamba-T
        forward (636 to 566 top-level aten operators in bench.host_step). The casts are made again whenever a parameter changes through torch (an optimizer
        step, load_state_dict, an in-place write, a move to another device), but not after a write through
        `p.data`, which torch does not count: use it for serving and evaluation (models/weight_cache.py).
        Off by default; off drops every kept cast."""
        for m in self.modules():
            if "weight_cache" in type(m).__dict__ or hasattr(type(m), "weight_cache"):
                m.weight_cache = bool(on)
                if not on:
                    weight_cache.clear(m)
        return self

    def set_cpp_stages(self, on: bool = True) -> "VSSM":
        """Inference (grad disabled, eval mode, eager) runs each stage's blocks as C++ host code, one Python call per
        stage, where the blocks are VMamba v2's default (channels-last v05_noz) on the cuda kernels: the same kernels
        in the same order as the Python path, so the same logits bit for bit, with a fraction of the host time that
        bounds a forward at small batches (models/cpp_stages.py). The first call of each input shape runs in Python
        and makes the plan; `models.cpp_stages.why_not(model)` says per stage why one runs in Python. The weights
        are kept across calls as by set_weight_cache (a write through `p.data` is not seen). Off by default."""
        for stage in self.layers:
            stage.cpp_stages = bool(on)
            cpp_stages.clear(stage)
        return self

    def no_weight_decay(self):
        return set()

    # ---- forward ---------------------------------------------------------------------------------
    def check_input(self, x) -> None:
        """Refuse, by name, an image the model cannot take, before torch fails deep inside with an
        error about some layer's weight."""
        C = self.cfg.in_chans
        want = f"images of shape (B, {C}, H, W)"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"VMamba model expects {want} as a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            hint = ": one image? add the batch dimension with x.unsqueeze(0)" if x.dim() == 3 else ""
            raise ValueError(f"VMamba model expects {want}, got a {x.dim()}-D tensor of shape {tuple(x.shape)}{hint}")
        if x.shape[1] != C:
            hint = (f": channels-last images? pass x.permute(0, 3, 1, 2)" if x.shape[-1] == C else
                    f" (in_chans={C}; create_model(..., in_chans={x.shape[1]}) builds a model for {x.shape[1]})")
            raise ValueError(f"VMamba model expects {want}, got shape {tuple(x.shape)} with {x.shape[1]} channels"
                             f"{hint}")
        w = self.patch_embed[0].weight
        if not x.is_floating_point():
            raise TypeError(f"VMamba model expects floating-point {want} ({str(w.dtype)[6:]}), got {str(x.dtype)[6:]}: "
                            f"convert and normalise them first (e.g. x.float() / 255, then the mean/std)")
        if x.device != w.device:
            raise ValueError(f"the image is on {x.device} but the model on {w.device}: move one of them, "
                             f"e.g. x.to({str(w.device)!r})")
        autocast = torch.is_autocast_enabled(x.device.type)
        if not autocast and x.dtype != w.dtype:
            low = (" (for lower precision on the CPU keep both in float32 and run under "
                   "torch.autocast('cpu', dtype=torch.bfloat16))" if x.device.type == "cpu" else
                   " (or keep the model in float32 and run under torch.autocast('cuda'))")
            raise TypeError(f"VMamba model with {str(w.dtype)[6:]} parameters expects {str(w.dtype)[6:]} {want}, got "
                            f"{str(x.dtype)[6:]}: cast the image, x.to({w.dtype}), or the model, "
                            f"model.to({x.dtype}){low}")
        if x.device.type == "cpu" and w.dtype in _HALF_DTYPES and self.cfg.forward_type != "m0_noz":
            raise TypeError(f"a {str(w.dtype)[6:]} VMamba model (forward_type {self.cfg.forward_type!r}) does not run "
                            f"on the CPU (its SS2D LayerNorm takes float32 input): keep the model and images in "
                            f"float32, optionally under torch.autocast('cpu', dtype=torch.bfloat16)")

    def _to_nchw(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2) if self.channels_last else x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> last stage map in the model layout (NHWC if channels_last else NCHW), before the
        classifier norm."""
        self.check_input(x)
        x = self.patch_embed(self._input_format(x))
        for stage in self.layers:
            x = stage(x)
        return x

    def _input_format(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last models permute the patch embedding's output to (B, H, W, C): from a channels_last
        # image cudnn writes that layout directly and the permute is free (3 input channels: a cheap copy)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Classifier on a forward_features map: norm, pool, (pre_logits: return pooled features), head."""
        c = self.classifier
        x = c.flatten(c.avgpool(c.permute(c.norm(x))))
        return x if pre_logits else c.head(x)

    def forward_intermediates(self, x: torch.Tensor) -> list:
        """The stage maps listed in out_indices, normed by outnorm{i}, NCHW (features_only models)."""
        self.check_input(x)
        x = self.patch_embed(self._input_format(x))
        outs = []
        for i, stage in enumerate(self.layers):
            o = stage.forward_blocks(x)
            x = stage.downsample(o)
            if i in self.out_indices:
                outs.append(self._to_nchw(getattr(self, f"outnorm{i}")(o)).contiguous())
        return outs if self.out_indices else [self._to_nchw(x).contiguous()]

    def forward(self, x: torch.Tensor):
        if self.features_only:
            outs = self.forward_intermediates(x)
            return outs if self.out_indices else outs[0]
        return self.forward_head(self.forward_features(x))

    # ---- loading ---------------------------------------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        remap_legacy_state_dict(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self) -> str:
        return f"variant dims={self.dims} depths={list(self.cfg.depths)} forward_type={self.cfg.forward_type!r} " \
               f"layout={'channels_last' if self.channels_last else 'channels_first'}"
