"""bench.host_step: the host cost of a step with the compute taken out (mocked kernels, tiny width)."""
from __future__ import annotations

import torch

from bench import host_step as HS


def test_prints_vmamba_row_and_counts_ops(capsys):
    rc = HS.main(["--baseline", "none", "--img-size", "32", "--steps", "1", "--recompute", "mlp"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[0].startswith("host cost per training fp32 step on this CPU, batch 1, 32x32")
    assert out[1].split()[0] == "vmamba_t" and "ms/step" in out[1] and out[1].endswith("aten ops/step")
    assert len(out) == 2  # no baseline row


def test_measure_counts_more_ops_for_more_layers():
    x = torch.randn(1, 4)
    one = torch.nn.Sequential(torch.nn.Linear(4, 4))
    three = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(3)])
    r1 = HS.measure(one, x, train=False, amp=False, steps=1)
    r3 = HS.measure(three, x, train=False, amp=False, steps=1)
    assert r3["ops"] == 3 * r1["ops"] and r1["ms"] > 0


def test_mocked_kernels_take_the_real_kernels_arguments():
    # the stand-ins must accept every argument the real raw kernels take (a new keyword, such as the norms'
    # from_y of set_recompute("norms"), once broke bench.host_step with a TypeError)
    import inspect

    from bench.overhead import _mock_module
    from vmamba_kernels import dispatch

    b = dispatch.get_backend("torch")
    mock, real = _mock_module(b), b.impl()
    # the raw kernels the real module runs as bodies (dispatch kind "body_native"), stood in for the same keys
    assert set(mock.body_ops_native) == set(getattr(real, "body_ops_native", {}))
    for name, fn in vars(mock).items():
        if name == "body_ops_native":
            continue
        want = inspect.signature(getattr(real, name)).parameters
        got = inspect.signature(fn).parameters
        # positional arguments match by count (the stand-ins use short names), optional ones by name
        optional = {p for p, v in want.items() if v.default is not inspect.Parameter.empty}
        assert len(got) == len(want) and optional <= set(got), (name, list(got), list(want))


def test_recompute_norms_runs_with_mocked_kernels(capsys):
    assert HS.main(["--baseline", "none", "--img-size", "32", "--steps", "1", "--recompute", "norms+delta"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == "vmamba_t"
