"""The analysis tools: scan recording in the models, the attention maps' route bookkeeping, the ERF method,
and the two CLIs (bench.attnmap, bench.erf) end to end on small models on the CPU."""
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

import models
from bench import attnmap as AM
from bench import erf as ERF
from bench._tiny import create_small_vmamba
from reference import cross_merge_ref, cross_scan_ref, selective_scan_attention, selective_scan_ref
from tests.scan_cases import assert_close

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
SMALL = "bench._tiny:create_small_vmamba"


# ---- record_scans --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vanilla_vmamba_tiny", "vmamba_tiny_s1l8", "vmamba_tiny_m2"])
def test_recorded_scan_inputs_reproduce_the_kernel_output(name):
    m = create_small_vmamba(name, impl="torch").eval()
    with models.record_scans(m, ["layers.2.*"]) as recs, torch.no_grad():
        m(torch.randn(1, 3, 64, 64))
    assert [r.layer for r in recs] == ["layers.2.blocks.0", "layers.2.blocks.1"]
    r = recs[1]
    assert (r.H, r.W, r.mode, r.delta_softplus) == (4, 4, "cross2d", True)
    W = selective_scan_attention(r.delta, r.A, r.B, r.C, r.delta_bias, r.delta_softplus, out_dtype=torch.float64)
    u = r.u.double()
    y = torch.einsum("bdts,bds->bdt", W, u) + r.D.double()[:, None] * u
    assert_close("W u + D u vs the model's scan", y, r.y.double(), 1e-5, 1e-6)
    op = m.layers[2].blocks[1].op
    assert "_call" not in op.__dict__, "the recording shadow must be removed on exit"


def test_record_scans_cleans_up_after_errors_and_names_bad_patterns():
    m = create_small_vmamba("vmamba_tiny_s1l8", impl="torch").eval()
    fused = {name: op.impl_ss2d_core for name, op in models.capture.ss2d_modules(m)}
    assert set(fused.values()) == {"torch"}  # the fused core runs: recording switches the chosen blocks off it
    with pytest.raises(KeyError), models.record_scans(m, "layers.3.*") as recs:
        assert {n: op.impl_ss2d_core for n, op in models.capture.ss2d_modules(m)} == {
            n: ("off" if n.startswith("layers.3.") else v) for n, v in fused.items()}
        with torch.no_grad():
            m(torch.randn(1, 3, 32, 32))
        raise KeyError("the caller fails after the forward")
    assert all("_call" not in op.__dict__ for _, op in models.capture.ss2d_modules(m))
    assert {name: op.impl_ss2d_core for name, op in models.capture.ss2d_modules(m)} == fused  # restored
    assert [r.layer for r in recs] == ["layers.3.blocks.0"]
    with pytest.raises(ValueError, match="matches no SS2D block"):
        with models.record_scans(m, ["layers.9.blocks.0"]):
            pass
    with pytest.raises(ValueError, match="no SS2D mixer"):
        with models.record_scans(nn.Conv2d(3, 3, 1)):
            pass


# ---- attention maps: routes back to pixels ------------------------------------------------------
def _fake_record(H=3, W=4, D=2, N=2):
    """A recording of a scan over a non-square map, and the SS2D core (cross scan, scan, cross merge) it
    belongs to, so the maps can be checked against autograd on the real route functions."""
    L, K = H * W, 4
    g = torch.Generator().manual_seed(1)
    f64 = torch.float64
    delta = torch.rand(1, K * D, L, generator=g, dtype=f64) - 0.3
    A = -torch.rand(K * D, N, generator=g, dtype=f64) - 0.2
    B, C = torch.randn(1, K, N, L, generator=g, dtype=f64), torch.randn(1, K, N, L, generator=g, dtype=f64)
    Dskip, bias = torch.randn(K * D, generator=g, dtype=f64), torch.rand(K * D, generator=g, dtype=f64)
    x = torch.randn(1, D, H, W, generator=g, dtype=f64)

    def core(xmap, route=None):
        u = cross_scan_ref(xmap).reshape(1, K * D, L)
        y = selective_scan_ref(u, delta, A, B, C, None, bias, True).view(1, K, D, L)
        if route is not None:
            y = y * (torch.arange(K) == route).view(1, K, 1, 1)
        return cross_merge_ref(y, H, W)

    u = cross_scan_ref(x).reshape(1, K * D, L)
    y = selective_scan_ref(u, delta, A, B, C, Dskip, bias, True)
    rec = SimpleNamespace(u=u, delta=delta, A=A, B=B, C=C, D=Dskip, delta_bias=bias, delta_softplus=True, y=y,
                          H=H, W=W, mode="cross2d")
    return rec, core, x


@pytest.mark.parametrize("query", [(0, 0), (1, 2), (2, 3)])
def test_query_maps_are_the_jacobian_of_the_merged_scan(query):
    rec, core, x = _fake_record()
    maps = AM.query_maps(rec, query)
    assert maps["check"] < 1e-12
    qy, qx = query
    D = x.shape[1]
    for route in (0, 1, 2, 3, None):
        J = torch.autograd.functional.jacobian(lambda v: core(v, route)[0, :, qy, qx], x)[:, 0]  # (D, D, H, W)
        want = torch.stack([J[d, d] for d in range(D)]).abs().mean(0).numpy()
        got = maps["merged"] if route is None else maps["routes"][route]
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=f"route {route}")


def test_full_matrices_match_the_query_rows():
    rec, _, _ = _fake_record()
    mats = AM.attention_matrices(rec, block_elems=200)  # several channel blocks
    L = rec.H * rec.W
    for p in (0, 5, L - 1):
        maps = AM.query_maps(rec, divmod(p, rec.W))
        np.testing.assert_allclose(mats["merged"][p], maps["merged"].reshape(-1), rtol=1e-12, atol=1e-14)
    assert np.all(np.triu(mats["routes"], 1) == 0), "route matrices are causal in scan order"


def test_parse_query():
    assert AM.parse_query(None, 6, 8) == (3, 4)
    assert AM.parse_query("2,7", 6, 8) == (2, 7)
    assert AM.parse_query("0.5,1.0", 6, 8) == (3, 7)
    for bad in ("6,0", "a,b", "1", "0.5,2.0"):
        with pytest.raises(ValueError, match="--query"):
            AM.parse_query(bad, 6, 8)


# ---- the ERF method ------------------------------------------------------------------------------
def _positive_conv(cin, cout):
    conv = nn.Conv2d(cin, cout, 3, padding=1)
    with torch.no_grad():
        conv.weight.uniform_(0.1, 1.0)
        conv.bias.uniform_(0.1, 1.0)
    return conv


@pytest.mark.parametrize("convs, side", [(1, 3), (2, 5), (3, 7)])
def test_erf_of_stacked_3x3_convs_has_the_exact_support(convs, side):
    # positive weights, biases and inputs keep every ReLU open, so the support is the full receptive field
    net = nn.Sequential(*[_positive_conv(3 if i == 0 else 4, 4) for i in range(convs)])
    images = [torch.rand(1, 3, 11, 12) for _ in range(2)]
    m, used, skipped = ERF.erf_map(net, images)
    assert (used, skipped) == (2, 0) and m.shape == (11, 12)
    ys, xs = np.nonzero(m)
    c, h = (11 // 2, 12 // 2), side // 2
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (c[0] - h, c[0] + h, c[1] - h, c[1] + h)
    assert len(ys) == side * side
    assert ERF.area_ratio(m, 0.99) <= side * side / (11 * 12) + 1e-12


def test_erf_skips_non_finite_gradients():
    conv = _positive_conv(3, 2)
    bad = torch.rand(1, 3, 7, 7) + 0.5
    bad[0, 0, 0, 0] = 0.0  # -> division by zero below: infinite output and gradient
    m, used, skipped = ERF.erf_map(lambda x: conv(x) / x[:, :1, :1, :1], [torch.rand(1, 3, 7, 7) + 0.5, bad])
    assert (used, skipped) == (1, 1) and np.isfinite(m).all()


def test_area_ratio():
    point = np.zeros((9, 9))
    point[4, 4] = 1
    assert ERF.area_ratio(point, 0.99) == 1 / 81
    flat = np.ones((9, 9))
    assert ERF.area_ratio(flat, 0.2) == 25 / 81  # 9 < 0.2 * 81 <= 25
    assert ERF.area_ratio(flat, 0.99) == 1.0


# ---- the CLIs ------------------------------------------------------------------------------------
def _png(path, size):
    from PIL import Image  # noqa: PLC0415

    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) >= size
    return True


@pytest.mark.parametrize("mod", [AM, ERF])
def test_help(mod, capsys):
    with pytest.raises(SystemExit) as e:
        mod.main(["--help"])
    assert e.value.code == 0
    assert f"usage: python -m {mod.__name__}" in capsys.readouterr().out


def test_attnmap_cli(tmp_path, capsys):
    from PIL import Image  # noqa: PLC0415

    out = tmp_path / "a.png"
    assert AM.main(["--model", "vmamba_t", "--model-factory", SMALL, "--impl", "torch", "--img-size", "64",
                    "--stage", "3", "--block", "1", "--query", "1,2", "--out", str(out)]) == 0
    assert _png(out, 300)
    text = capsys.readouterr().out
    assert "layers.2.blocks.1: map 4 x 4, query (1, 2)" in text
    check = float(text.split("query: ")[1].split()[0])
    assert check < 1e-5
    img = tmp_path / "in.png"
    Image.fromarray((np.random.rand(40, 50, 3) * 255).astype(np.uint8)).save(img)
    out2 = tmp_path / "b.png"
    assert AM.main(["--model", "vanilla_vmamba_tiny", "--model-factory", SMALL, "--impl", "torch", "--img-size",
                    "32", "--stage", "1", "--block", "0", "--image", str(img), "--out", str(out2)]) == 0
    assert _png(out2, 300)
    assert AM.main(["--model", "vmamba_t", "--model-factory", SMALL, "--img-size", "32", "--stage", "0",
                    "--out", str(tmp_path / "c.png")]) == 2
    assert AM.main(["--model", "vmamba_t", "--model-factory", SMALL, "--img-size", "32", "--query", "9,9",
                    "--out", str(tmp_path / "c.png")]) == 2
    assert "--stage must be in 1..4 (numbered as in the paper)" in capsys.readouterr().err


def test_erf_cli(tmp_path, capsys):
    from PIL import Image  # noqa: PLC0415

    out = tmp_path / "e.png"
    assert ERF.main(["--model", "vmamba_t,vmamba_tiny_m2", "--model-factory", SMALL, "--impl", "torch", "--img-size",
                     "32", "--num-images", "1", "--out", str(out)]) == 0
    assert _png(out, 300)
    text = capsys.readouterr().out
    assert "random inputs" in text and "vmamba_tiny_m2" in text
    folder = tmp_path / "imgs" / "class0"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray((np.random.rand(36, 30, 3) * 255).astype(np.uint8)).save(folder / f"{i}.jpg")
    out2 = tmp_path / "f.png"
    assert ERF.main(["--model", "vmamba_t", "--model-factory", SMALL, "--impl", "torch", "--img-size", "32",
                     "--num-images", "2", "--images", str(tmp_path / "imgs"), "--scale", "log", "--out",
                     str(out2)]) == 0
    assert _png(out2, 300)
    assert "2 images from" in capsys.readouterr().out


class _FakeTimmNet(nn.Module):
    """Stands in for a timm model: NCHW stages through forward_intermediates."""

    def __init__(self):
        super().__init__()
        self.stem = _positive_conv(3, 4)

    def forward_intermediates(self, x, indices=1, intermediates_only=True):
        return [torch.relu(self.stem(x))]


def test_erf_timm_path_with_a_mock(tmp_path, monkeypatch, capsys):
    calls = []

    def create_model(name, **kw):
        calls.append((name, kw))
        if "img_size" in kw:
            raise TypeError("unexpected keyword argument 'img_size'")  # as timm's convnets
        return _FakeTimmNet()

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    out = tmp_path / "t.png"
    assert ERF.main(["--model", "fake_convnet", "--img-size", "16", "--num-images", "1", "--out", str(out)]) == 0
    assert _png(out, 300)
    assert calls == [("fake_convnet", {"img_size": 16}), ("fake_convnet", {})]
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    assert ERF.main(["--model", "swin_tiny_patch4_window7_224", "--img-size", "16", "--num-images", "1",
                     "--out", str(tmp_path / "u.png")]) == 2
    err = capsys.readouterr().err
    assert "not a vmamba-lab model" in err and "timm" in err and "not installed" in err


def test_erf_cpu_defaults_and_allow_pickle(monkeypatch):
    a = ERF.parse_args(["--model", "vmamba_t"])
    note = ERF.resolve_defaults(a, torch.device("cpu"))
    assert (a.img_size, a.num_images) == (224, 4) and "--img-size 224" in note and "--num-images 4" in note
    a = ERF.parse_args(["--model", "vmamba_t", "--img-size", "64"])
    assert ERF.resolve_defaults(a, torch.device("cuda")) is None and (a.img_size, a.num_images) == (64, 50)
    seen = []

    def factory(name, **kw):
        seen.append(kw)
        return _FakeTimmNet()

    monkeypatch.setattr(ERF, "_factory", lambda spec: factory)
    ERF.build("vmamba_t", None, "x.pth", 32, "cpu", allow_pickle=True)
    ERF.build("vmamba_t", "torch", "", 32, "cpu")
    assert seen[0]["allow_pickle"] is True and seen[0]["pretrained"] == "x.pth"
    assert "allow_pickle" not in seen[1] and seen[1]["impl"] == "torch" and seen[1]["out_indices"] == (3,)
