"""VMamba models (pure PyTorch on the vmamba_kernels ops), faithful to the official weights.

    import models
    m = models.create_model("vmamba_tiny_s1l8", impl="torch")          # any backend for every layer
    m = models.create_model("vmamba_t", impl={"layers.2.blocks.*": models.KernelPolicy(selective_scan="cuda"),
                                               "layers.[013].*": "triton"})
    print(m.impl_table(as_text=True))
    m = models.create_model("vmamba_b", pretrained="/path/vssm_base_0229_ckpt_epoch_237.pth",
                            allow_pickle=True)  # official files pickle their config: only for files you trust
    feats = models.create_model("vmamba_t", features_only=True, out_indices=(0, 1, 2, 3))(x)  # 4 NCHW maps

See models/vmamba.py (modules), models/ss2d.py (the mixer), models/policy.py (per-layer kernels),
models/registry.py (variants, checkpoints).
"""
from .capture import ScanRecord, record_scans
from .layers import DropPath, LayerNorm2d, Linear2d
from .policy import KernelPolicy
from .registry import (ALIASES, CONFIGS, OFFICIAL_COUNTS, create_model, extract_state_dict, get_config, list_models,
                       load_checkpoint, model_configs, release_url)
from .ss2d import SS2Dm0, SS2Dv0, SS2Dv05
from .vmamba import VMambaConfig, VSSBlock, VSSM, remap_legacy_state_dict

__all__ = ["create_model", "list_models", "model_configs", "get_config", "load_checkpoint", "extract_state_dict",
           "release_url", "KernelPolicy", "VSSM", "VSSBlock", "VMambaConfig", "SS2Dv0", "SS2Dv05", "SS2Dm0",
           "remap_legacy_state_dict", "LayerNorm2d", "Linear2d", "DropPath", "CONFIGS", "ALIASES",
           "OFFICIAL_COUNTS", "record_scans", "ScanRecord"]
