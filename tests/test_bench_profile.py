"""bench.profile: the wall / kernel-time split of a step and the category table (on the CPU: operators)."""
from __future__ import annotations

import pytest

from bench import profile as P


def test_split_line_names_host_waiting():
    assert P.format_split(84.0, 48.4, True) == \
        "step: 84.00 ms wall, kernels 48.40 ms (58%); the GPU idles 35.60 ms a step waiting on the host"
    assert "idles" not in P.format_split(50.0, 48.0, True)  # GPU-bound: nothing to say
    assert P.format_split(10.0, 9.0, False).startswith("step: 10.00 ms wall, operators (self time) 9.00 ms")


def test_cpu_run_prints_split_and_table(capsys):
    rc = P.main(["--device", "cpu", "--model", "vmamba_t", "--impl", "torch", "--img-size", "32", "--batch-size", "1",
                 "--train", "--recompute", "mlp", "--steps", "1", "--warmup", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    assert lines[1].startswith("step: ") and " ms wall, operators (self time) " in lines[1]
    assert lines[2].split() == ["category", "share", "ms/step", "launches/step"]
    assert lines[-1].startswith("total") and "100.0%" in lines[-1]


def test_recompute_values_checked(capsys):
    assert P.parse_args(["--recompute", "norms+delta"]).recompute == "norms+delta"
    with pytest.raises(SystemExit):
        P.parse_args(["--recompute", "norms+gelu"])
    assert "parts of norms, delta, routes, mlp joined by '+'" in capsys.readouterr().err


def test_recompute_needs_a_vmamba_model(monkeypatch):
    monkeypatch.setattr(P, "build", lambda *a: __import__("torch").nn.Linear(2, 2))
    with pytest.raises(SystemExit, match="not a VMamba model"):
        P.main(["--device", "cpu", "--model", "resnet", "--recompute", "all", "--steps", "1", "--warmup", "0"])


def test_ops_lists_operators_by_shape(capsys):
    """--ops N: the operators with the most time of their own, each with its input shapes (on the CPU: CPU time)."""
    rc = P.main(["--device", "cpu", "--model", "vmamba_t", "--impl", "torch", "--img-size", "32", "--batch-size", "1",
                 "--steps", "1", "--warmup", "1", "--ops", "3"])
    out = capsys.readouterr().out
    assert rc == 0
    tail = out.split("operators with the most CPU time of their own, by input shapes\n")[1].splitlines()
    assert tail[0].split()[:3] == ["ms/step", "calls/step", "operator"]
    assert len(tail) == 4 and all(" aten::" in r and "[" in r for r in tail[1:])
    times = [float(r.split()[0]) for r in tail[1:]]
    assert times == sorted(times, reverse=True) and times[0] > 0


def test_compiled_graph_ranges_are_not_kernels():
    """torch.compile's per-graph GPU ranges would count the graph's kernels twice (a compiled VMamba-T profile
    on the H200 listed 36 of 48 ms/step as "other" that way)."""
    assert P.is_annotation("## Call CompiledFxGraph fciqskx6k2rdh3uyhsvxnqxlshy6jawjvcpwdkm3tr72kzxsbrj3 ##")
    assert not P.is_annotation("void vmamba::scan::(anonymous namespace)::bwd_n1_kernel<__half, float, true>")
    assert not P.is_annotation("triton_poi_fused_gelu_view_2")


def test_explain_counts_graphs_and_names_the_break():
    """--explain reports torch.compile's graph breaks with the line that caused each (planted: a print)."""
    import torch

    class Breaks(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            y = self.conv(x)
            print("", end="")  # dynamo cannot trace print: two graphs
            return y.mean((2, 3))

    out = P.explain(Breaks(), 1, 8, torch.device("cpu"), amp=False, train=False)
    lines = out.splitlines()
    assert lines[0] == "torch.compile: 2 graph(s), 1 graph break(s)"
    assert "test_bench_profile.py" in lines[1] and "print" in lines[1]
    vm = P.explain(P.build("vmamba_t", "torch", False, "channels_last"), 1, 32, torch.device("cpu"), amp=True,
                   train=False)
    assert vm.splitlines() == ["torch.compile: 1 graph(s), 0 graph break(s)"]


def test_explain_needs_compile():
    with pytest.raises(SystemExit, match="--explain goes with --compile"):
        P.main(["--device", "cpu", "--model", "vmamba_t", "--impl", "torch", "--explain", "--steps", "1"])


def test_host_lists_host_events_and_launches(capsys):
    """--host N: the host events with the most CPU time of their own, and the kernel launches per step."""
    rc = P.main(["--device", "cpu", "--model", "vmamba_t", "--impl", "torch", "--img-size", "32", "--batch-size", "1",
                 "--steps", "2", "--warmup", "1", "--host", "4"])
    out = capsys.readouterr().out
    assert rc == 0
    tail = out.split("host events with the most CPU time of their own\n")[1].splitlines()
    assert tail[0].startswith("host: ") and tail[0].endswith(", 0 kernel launches per step")  # the CPU: none
    assert tail[1].split() == ["ms/step", "calls/step", "us/call", "event"]
    assert len(tail) == 6
    times = [float(r.split()[0]) for r in tail[2:]]
    assert times == sorted(times, reverse=True) and times[0] > 0
    assert float(tail[0].split()[1]) >= sum(times)  # the total covers every event, the rows only the largest


def test_format_host_counts_per_step():
    host = {"rows": [(3000.0, 6, "aten::mm"), (1000.0, 20, "cudaLaunchKernel")], "total_us": 8000.0, "launches": 20}
    lines = P.format_host(host, steps=2).splitlines()
    assert lines[0] == ("host: 4.00 ms of CPU time in events per step (profiler overhead included), 10 kernel "
                        "launches per step")
    assert lines[2].split() == ["1.500", "3.0", "500.0", "aten::mm"]
    assert lines[3].split() == ["0.500", "10.0", "50.0", "cudaLaunchKernel"]


@pytest.mark.parametrize("flag", ["--top", "--ops", "--host"])
def test_negative_row_counts_are_refused(flag, capsys):
    with pytest.raises(SystemExit):
        P.parse_args([flag, "-1"])
    assert f"{flag} takes a count of rows (0 or more), not -1" in capsys.readouterr().err


def test_csrc_body_kernels_get_their_categories():
    # the names the profiler reports for csrc's generic body_kernel<K> launches (common/launch.cuh): before the
    # namespace patterns, the fused norms and depthwise conv fell into "other"
    from bench.profile import categorize

    assert categorize("void vmamba::body_kernel<vmamba::ln::FwdCl<c10::Half, float, 4> >(vmamba::ln::FwdCl<"
                      "c10::Half, float, 4>::Args)") == "fused add + LayerNorm"
    assert categorize("void vmamba::body_kernel<vmamba::dw::DwCl<c10::Half, 3> >(vmamba::dw::DwArgs)") == \
        "fused depthwise conv"
    assert categorize("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float> >") == \
        "other elementwise / reductions"
