"""Record the official VMamba's logits under seeded weights: the data of tests/test_models_oracle.py.

Runs the official classification models (classification/models/vmamba.py of MzeroMiko/VMamba) on the
CPU, where their code falls back to plain torch (the selective-scan loop of csms6s.py, the cross scan of
csm_triton.py, the chunked SSD of mamba2/ssd_minimal.py, whose triton switch is turned off here).
Every variant of tests/model_oracle.VARIANTS gets the weights of tests/model_oracle.oracle_state_dict
(seeded per state_dict key, independent of either model's init) and the seeded input oracle_input();
its logits go to tests/data/official_logits.json with their provenance. Nothing of the official code is
copied into this repository: it is imported from the path given.

Exact commands (from the repository root; the official code's own imports need timm, einops, fvcore
and torchvision, installed for this script only, never as project dependencies):

    git --git-dir=/path/to/MzeroMiko/VMamba/.git archive 2ed52ead062a51a64521ed3871d52914bf532876 \
        classification/models | tar -x -C /tmp/vmofficial          # or any checkout at that commit
    python -m pip install --target /tmp/offdeps --no-deps einops timm==1.0.31 fvcore==0.1.5.post20221221 \
        iopath yacs tabulate termcolor portalocker pyyaml huggingface_hub safetensors tqdm "torchvision==0.29.*"
    PYTHONPATH=$PWD:/tmp/offdeps python tests/tools/record_official_logits.py \
        --official /tmp/vmofficial --commit 2ed52ead062a51a64521ed3871d52914bf532876

(torchvision must match the installed torch: 0.29 for torch 2.14.)
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from tests import model_oracle

OUT = Path(__file__).resolve().parent.parent / "data" / "official_logits.json"


def _import_official(root: Path):
    models_dir = root / "classification" / "models"
    src = models_dir / "vmamba.py"
    if not src.is_file():
        raise SystemExit(f"{src} not found: --official must be a checkout (or archive) of MzeroMiko/VMamba")
    sys.path.insert(0, str(models_dir))  # their absolute-import fallbacks (csm_triton, csms6s, mamba2)
    import vmamba  # noqa: PLC0415

    # CPU tensors take the torch cross scan (csm_triton checks x.is_cuda) and, without the CUDA
    # extensions, the torch selective scan (csms6s); the chunked SSD checks only that triton imports
    sys.modules["mamba2.ssd_minimal"].WITH_TRITON = False
    # cross_scan_fn / cross_merge_fn enter `torch.cuda.device(x.device)` for every tensor, which torch
    # accepted for CPU devices when the official code was written (a no-op) and now refuses
    cuda_device = torch.cuda.device
    torch.cuda.device = lambda d: cuda_device(d) if torch.device(d).type == "cuda" else contextlib.nullcontext()
    return vmamba, hashlib.sha256(src.read_bytes()).hexdigest()


def _commit(root: Path, given):
    if given:
        return given
    r = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit("--official is not a git checkout: pass --commit")
    return r.stdout.strip()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official", required=True, type=Path, help="checkout of MzeroMiko/VMamba")
    p.add_argument("--commit", help="the checkout's commit (read with git when omitted)")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    official, src_sha = _import_official(a.official)
    torch.set_num_threads(2)
    x = model_oracle.oracle_input()
    records = {}
    for tag, (builder, channel_first) in model_oracle.VARIANTS.items():
        build = getattr(official, builder)
        model = (build() if channel_first is None else build(channel_first=channel_first)).eval()
        state = model_oracle.oracle_state_dict(model.state_dict())
        model.load_state_dict(state, strict=True)
        with torch.no_grad():
            logits = model(x)
        assert logits.shape == (x.shape[0], 1000) and torch.isfinite(logits).all(), tag
        records[tag] = {
            "builder": builder, "channel_first": channel_first,
            "weights_fingerprint": model_oracle.fingerprint(state),
            "logits": [[float(f"{v:.8g}") for v in row] for row in logits.tolist()],
        }
        print(f"{tag}: |logits| max {logits.abs().max().item():.4g}, std {logits.std().item():.4g}")
    data = {
        "provenance": {
            "official_repo": "MzeroMiko/VMamba", "official_commit": _commit(a.official, a.commit),
            "official_vmamba_py_sha256": src_sha,
            "command": "PYTHONPATH=$PWD:/tmp/offdeps python " + " ".join(map(shlex.quote, sys.argv)),
            "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "torch": torch.__version__, "python": platform.python_version(),
            "seed": model_oracle.SEED, "input_shape": list(model_oracle.IMAGE), "dtype": "float32, CPU",
            "note": "logits of the official code on its torch fallbacks; weights and input from tests/model_oracle.py",
        },
        "models": records,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {a.out} ({a.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
