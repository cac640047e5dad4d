"""Variant table, create_model / list_models / model_configs, checkpoint loading."""
from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import asdict, fields, replace
from typing import Optional

import torch

from .vmamba import VMambaConfig, VSSM

_V0 = dict(ssm_d_state=16, ssm_ratio=2.0, ssm_act_layer="silu", ssm_conv=3, ssm_conv_bias=True, ssm_init="v0",
           forward_type="v0", mlp_ratio=0.0, norm_layer="ln", downsample_version="v1", patchembed_version="v1")
_V2 = dict(ssm_d_state=1, ssm_act_layer="silu", ssm_conv=3, ssm_conv_bias=False, ssm_init="v0",
           forward_type="v05_noz", mlp_ratio=4.0, norm_layer="ln2d", downsample_version="v3", patchembed_version="v2")
_M2 = dict(ssm_d_state=64, ssm_ratio=1.0, ssm_act_layer="gelu", ssm_conv=3, ssm_conv_bias=False, ssm_init="v2",
           forward_type="m0_noz", mlp_ratio=4.0, norm_layer="ln", downsample_version="v3", patchembed_version="v2")

# official builder name -> config (the builders in the official classification/models/vmamba.py)
CONFIGS = {
    "vanilla_vmamba_tiny": VMambaConfig(depths=(2, 2, 9, 2), dims=96, drop_path_rate=0.2, **_V0),
    "vanilla_vmamba_small": VMambaConfig(depths=(2, 2, 27, 2), dims=96, drop_path_rate=0.3, **_V0),
    "vanilla_vmamba_base": VMambaConfig(depths=(2, 2, 27, 2), dims=128, drop_path_rate=0.6, **_V0),
    "vmamba_tiny_s2l5": VMambaConfig(depths=(2, 2, 5, 2), dims=96, ssm_ratio=2.0, drop_path_rate=0.2, **_V2),
    "vmamba_small_s2l15": VMambaConfig(depths=(2, 2, 15, 2), dims=96, ssm_ratio=2.0, drop_path_rate=0.3, **_V2),
    "vmamba_base_s2l15": VMambaConfig(depths=(2, 2, 15, 2), dims=128, ssm_ratio=2.0, drop_path_rate=0.6, **_V2),
    "vmamba_tiny_s1l8": VMambaConfig(depths=(2, 2, 8, 2), dims=96, ssm_ratio=1.0, drop_path_rate=0.2, **_V2),
    "vmamba_small_s1l20": VMambaConfig(depths=(2, 2, 20, 2), dims=96, ssm_ratio=1.0, drop_path_rate=0.3, **_V2),
    "vmamba_base_s1l20": VMambaConfig(depths=(2, 2, 20, 2), dims=128, ssm_ratio=1.0, drop_path_rate=0.5, **_V2),
    "vmamba_tiny_m2": VMambaConfig(depths=(2, 2, 4, 2), dims=96, drop_path_rate=0.2, **_M2),
    "vmamba_small_m2": VMambaConfig(depths=(2, 2, 12, 2), dims=96, drop_path_rate=0.3, **_M2),
    "vmamba_base_m2": VMambaConfig(depths=(2, 2, 12, 2), dims=128, drop_path_rate=0.3, **_M2),
}
# README headline models
ALIASES = {"vmamba_t": "vmamba_tiny_s1l8", "vmamba_s": "vmamba_small_s2l15", "vmamba_b": "vmamba_base_s2l15"}

# official fvcore (params, GFLOPs at 224, head included), as the official analyze/ scripts count them
OFFICIAL_COUNTS = {
    "vanilla_vmamba_tiny": (22_893_448, 5.62689504),
    "vanilla_vmamba_small": (44_417_416, 11.231522784),
    "vanilla_vmamba_base": (76_254_056, 18.020115136),
    "vmamba_tiny_s2l5": (30_705_832, 4.85774208),
    "vmamba_small_s2l15": (50_147_752, 8.71577472),
    "vmamba_base_s2l15": (88_557_800, 15.358944256),
    "vmamba_tiny_s1l8": (30_249_064, 4.905609984),
    "vmamba_small_s1l20": (49_012_840, 8.612211456),
    "vmamba_base_s1l20": (86_614_504, 15.220859904),
}

_RELEASE = "https://github.com/MzeroMiko/VMamba/releases/download/%23{tag}/{file}.pth"
# released ImageNet-1k checkpoints (GitHub release assets of tags "#v0cls" / "#v2cls")
RELEASED = {
    "vanilla_vmamba_tiny": ("v0cls", "vssmtiny_dp01_ckpt_epoch_292"),
    "vanilla_vmamba_small": ("v0cls", "vssmsmall_dp03_ckpt_epoch_238"),
    "vanilla_vmamba_base": ("v0cls", "vssmbase_dp06_ckpt_epoch_241"),
    "vmamba_tiny_s2l5": ("v2cls", "vssm_tiny_0230_ckpt_epoch_262"),
    "vmamba_small_s2l15": ("v2cls", "vssm_small_0229_ckpt_epoch_222"),
    "vmamba_base_s2l15": ("v2cls", "vssm_base_0229_ckpt_epoch_237"),
    "vmamba_tiny_s1l8": ("v2cls", "vssm1_tiny_0230s_ckpt_epoch_264"),
    "vmamba_small_s1l20": ("v2cls", "vssm1_small_0229s_ckpt_epoch_240"),
    "vmamba_base_s1l20": ("v2cls", "vssm1_base_0229s_ckpt_epoch_225"),
}


def release_url(name: str) -> Optional[str]:
    """Download URL of the released checkpoint of variant `name` (None if nothing was released)."""
    entry = RELEASED.get(ALIASES.get(name, name))
    return None if entry is None else _RELEASE.format(tag=entry[0], file=entry[1])


def list_models() -> list:
    """Official builder names, then the aliases."""
    return list(CONFIGS) + list(ALIASES)


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    n = ALIASES.get(name, name)
    if n not in CONFIGS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return n


def model_configs() -> dict:
    """{name: config dict} for every official variant (aliases not repeated), with 'official_params' /
    'official_gflops' where the official repo recorded them (None for m2)."""
    out = {}
    for name, cfg in CONFIGS.items():
        d = asdict(cfg)
        d["channels_last"] = cfg.channels_last
        d["official_params"], d["official_gflops"] = OFFICIAL_COUNTS.get(name, (None, None))
        d["aliases"] = [a for a, n in ALIASES.items() if n == name]
        out[name] = d
    return out


# the layout create_model gives a model unless told otherwise: channels last measured 1.33-1.43x faster than
# channels first on the H200, inference and training (reports/logs/2026-12-04_training_memory_H200.md)
DEFAULT_CHANNELS_LAST = True


def default_channels_last(name: str) -> bool:
    """The layout create_model gives `name` when the caller names none: DEFAULT_CHANNELS_LAST for the variants
    released channels first (ln2d, which run either way), the released layout for the others (v0, m2: channels
    last only)."""
    cfg = CONFIGS[_canonical(name)]
    return DEFAULT_CHANNELS_LAST if cfg.norm_layer.lower() == "ln2d" else cfg.channels_last


def get_config(name: str, **overrides) -> VMambaConfig:
    cfg = CONFIGS[_canonical(name)]
    if "channel_first" in overrides:  # the old name of the layout override
        warnings.warn("create_model / get_config: channel_first=... is now channels_last=not channel_first",
                      DeprecationWarning, stacklevel=3)
        overrides["channels_last"] = not overrides.pop("channel_first")
    if "channels_last" in overrides:
        cl = overrides.pop("channels_last")
        overrides.setdefault("norm_layer", "ln" if cl else "ln2d")
    if "depths" in overrides:
        overrides["depths"] = tuple(overrides["depths"])
    valid = {f.name for f in fields(VMambaConfig)}
    bad = sorted(set(overrides) - valid)
    if bad:
        raise TypeError(f"unknown override(s) {', '.join(bad)} for {name!r}; valid: channels_last, "
                        f"features_only, out_indices, fallback, {', '.join(sorted(valid))}")
    return replace(cfg, **overrides)


def create_model(name: str, impl=None, pretrained=None, num_classes: int = 1000, **overrides) -> VSSM:
    """Build a VMamba variant.

    name: official builder name (see list_models()) or alias vmamba_t / vmamba_s / vmamba_b.
    impl: None (automatic), a backend name, a KernelPolicy, or {layer glob: name | KernelPolicy}.
    pretrained: None/False, or a path to a checkpoint file ("model" / "model_ema" entry or a bare
        state_dict). True is refused (no downloads): the error gives the release URL.
    num_classes: classifier size (a checkpoint's head is skipped when it does not match).
    overrides: any VMambaConfig field (e.g. channels_last=False, the same as norm_layer="ln2d"; drop_path_rate,
        depths, forward_type), plus fallback=bool, features_only=bool, out_indices=(...),
        checkpoint_key="model"|"model_ema", allow_pickle=bool (see load_checkpoint).

    Layout: every model runs channels last (B, H, W, C), the v2 variants released channels first (ln2d) too,
    unless `channels_last=False` (or a norm_layer) is given; `model_configs()` still reports the released layout.
    The weights, state_dict and logits are the same in both; DEFAULT_CHANNELS_LAST says why.
    """
    canonical = _canonical(name)
    if not {"channels_last", "channel_first", "norm_layer"} & overrides.keys():
        overrides["channels_last"] = default_channels_last(canonical)
    fallback = overrides.pop("fallback", False)
    features_only = overrides.pop("features_only", False)
    out_indices = overrides.pop("out_indices", (0, 1, 2, 3))
    key = overrides.pop("checkpoint_key", None)
    allow_pickle = overrides.pop("allow_pickle", False)
    cfg = get_config(canonical, num_classes=num_classes, **overrides)
    if pretrained is True:
        url = release_url(canonical)
        where = (f"download {url} (a GitHub release asset of MzeroMiko/VMamba) and pass its path: "
                 f"create_model({name!r}, pretrained='/path/to/{url.rsplit('/', 1)[-1]}')") if url else \
            f"the official repo released no checkpoint for {canonical!r}"
        raise ValueError(f"pretrained=True: this package does not download weights; {where}")
    model = VSSM(cfg, impl=impl, fallback=fallback, features_only=features_only, out_indices=out_indices)
    if pretrained:
        load_checkpoint(model, pretrained, key=key, allow_pickle=allow_pickle)
    return model


def _torch_load(path: str, allow_pickle: bool = False):
    """torch.load with weights_only=True; weights_only=False only when the caller opted in (it runs
    whatever code the file's pickle names), with a warning."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file {path!r} does not exist")
    if allow_pickle:
        warnings.warn(f"{path}: loading with torch.load(weights_only=False) as allow_pickle=True asked: this runs "
                      f"code named in the file; only do this for files you trust", stacklevel=3)
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # official checkpoints also pickle their yacs config
        raise pickle.UnpicklingError(
            f"{path} holds pickled objects besides tensors (official VMamba checkpoints also pickle their training "
            f"config), which torch.load(weights_only=True) refuses ({str(e).splitlines()[0]}). If you trust the "
            f"file, pass allow_pickle=True: create_model(..., pretrained=path, allow_pickle=True) or "
            f"load_checkpoint(model, path, allow_pickle=True)") from e


def extract_state_dict(obj, key: Optional[str] = None) -> dict:
    """The state_dict inside a checkpoint object: obj[key] if key, else obj["model"], obj["model_ema"],
    obj["state_dict"] (first present), else obj itself when it maps names to tensors."""
    if not isinstance(obj, dict):
        raise TypeError(f"checkpoint must be a dict, got {type(obj).__name__}")
    if key is not None:
        if key not in obj:
            raise KeyError(f"checkpoint has no entry {key!r}; entries: {', '.join(map(str, obj))}")
        return dict(obj[key])
    for k in ("model", "model_ema", "state_dict"):
        if k in obj and isinstance(obj[k], dict):
            return dict(obj[k])
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    raise ValueError(f"no state_dict found in checkpoint (entries: {', '.join(map(str, obj))}); "
                     f"expected 'model', 'model_ema', 'state_dict' or a bare state_dict")


def load_checkpoint(model: VSSM, checkpoint, key: Optional[str] = None, strict: bool = True,
                    allow_pickle: bool = False):
    """Load a checkpoint path / object / state_dict into `model` (legacy names remapped).

    Classification models load strictly, except that a classifier head of another size is skipped
    (with a warning naming the keys dropped). features_only models ignore classifier.* and may miss
    outnorm{i} (as the official backbone). A file is read with torch.load(weights_only=True);
    allow_pickle=True (for files you trust, e.g. the official releases, which pickle their config)
    reads it with weights_only=False, with a warning."""
    obj = _torch_load(os.fspath(checkpoint), allow_pickle) if isinstance(checkpoint, (str, os.PathLike)) \
        else checkpoint
    sd = extract_state_dict(obj, key)
    from .vmamba import remap_legacy_state_dict

    remap_legacy_state_dict(sd)
    allowed_missing = set()
    if model.features_only:
        sd = {k: v for k, v in sd.items() if not k.startswith("classifier.")}
        allowed_missing = {k for k in model.state_dict() if k.startswith("outnorm")}
    else:
        head = model.classifier.head
        if "classifier.head.weight" in sd and sd["classifier.head.weight"].shape != head.weight.shape:
            n_ckpt = sd["classifier.head.weight"].shape[0]
            dropped = [k for k in ("classifier.head.weight", "classifier.head.bias") if sd.pop(k, None) is not None]
            allowed_missing = {"classifier.head.weight", "classifier.head.bias"}
            warnings.warn(f"checkpoint's classifier has {n_ckpt} classes, the model {head.out_features} "
                          f"(num_classes): dropped {', '.join(dropped)} from the checkpoint; the model's head keeps "
                          f"its random initialisation", stacklevel=2)
    res = model.load_state_dict(sd, strict=False)
    missing = [k for k in res.missing_keys if k not in allowed_missing]
    if strict and (missing or res.unexpected_keys):
        raise RuntimeError(f"checkpoint does not match {type(model).__name__}: missing {missing[:10]}"
                           f"{'...' if len(missing) > 10 else ''}, unexpected {res.unexpected_keys[:10]}"
                           f"{'...' if len(res.unexpected_keys) > 10 else ''}")
    return res
