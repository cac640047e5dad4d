"""bench.kernels' ss2d_core rows (the fused op and, in the same run, the chain it replaces) and bench.tp's
--ss2d-core switch, on the CPU with impl torch at tiny sizes."""
from __future__ import annotations

import pytest
import torch

import models
from bench import kernels as BK
from bench import tp as TP
from bench.results import read_csv
from bench.shapes import stage_shapes


def test_kernels_ss2d_core_rows(tmp_path, capsys):
    rc = BK.main(["--impls", "torch", "--ops", "ss2d_core", "--models", "vmamba_t", "--dtypes", "fp32",
                  "--batch-size", "1", "--img-size", "32", "--stages", "4", "--layouts", "cf,cl", "--reps", "2",
                  "--warmup", "1", "--reports-dir", str(tmp_path)])
    assert rc == 0
    _, rows = read_csv(tmp_path / "kernels.csv")
    got = {(r["impl"], r["direction"], r["shape"]) for r in rows}
    shapes = {"B1 D768 H1 W1 N1 R48", "B1 D768 H1 W1 N1 R48 channels_last"}
    assert got == {(i, d, s) for i in ("torch", "torch" + BK.UNFUSED) for d in ("fwd", "bwd") for s in shapes}
    sh = stage_shapes("vmamba_t", 1, 32)[3]
    for r in rows:
        assert r["op"] == "ss2d_core" and int(r["bytes"]) == BK.ss2d_bytes(sh, torch.float32, torch.float32,
                                                                            r["direction"])
    # x (768 fp32) read, the weights (4 * (50 * 768 + 768 * 48 + 768 + 2 * 768) fp32) read, y written
    assert BK.ss2d_bytes(sh, torch.float32, torch.float32, "fwd") == 768 * 4 * 2 + 4 * 4 * (50 * 768 + 768 * 48 + 3 * 768)
    with pytest.raises(SystemExit):
        BK.main(["--ops", "ss2d", "--no-csv"])


def test_kernels_unfused_chain_is_the_op():
    """the chain timed against the fused op computes the same y"""
    sh = stage_shapes("vmamba_t", 2, 32)[2]
    s = BK.ss2d_inputs(sh, torch.float32, "cpu", True, 0)
    import vmamba_kernels as vk

    y = vk.ss2d_core(*(s[k] for k in BK.SS2D_ARGS), channels_last=True, out_dtype=torch.float32, impl="torch")
    torch.testing.assert_close(BK.unfused_chain(vk.ops("torch"), s, True, torch.float32), y, rtol=1e-4, atol=1e-4)


def test_tp_ss2d_core_switch():
    assert TP.parse_args([]).ss2d_core == "auto"
    assert TP._policy("cuda", "fused", "auto") == "cuda"
    off = TP._policy("cuda", "fused", "off")
    assert off.ss2d_core == "off" and off.selective_scan == "cuda"
    tri = TP._policy("cuda", "fused", "triton")
    assert tri.ss2d_core == "triton" and tri.cross_merge == "cuda"
    assert TP._policy("cuda", "unfused", "triton") == models.KernelPolicy.unfused("cuda")
    assert TP._core_label("off") == ":core_off" and TP._core_label("auto") == ""
    assert TP.parse_args(["--ss2d-core", "both"]).ss2d_core == "both"
    assert TP.parse_args(["--ss2d-core", "both"]).cores == ["auto", "off"]
    assert TP.parse_args(["--ss2d-core", "off,torch"]).cores == ["off", "torch"]  # measured in turn, one run
    with pytest.raises(SystemExit):
        TP.parse_args(["--ss2d-core", "cupy"])  # does not implement it
    with pytest.raises(SystemExit):
        TP.parse_args(["--ss2d-core", "off,bogus"])  # every entry is checked
