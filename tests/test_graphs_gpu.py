"""GPU: CUDA-graph replays (models/graphs.py) give what eager execution gives, for impl cuda and triton.

- inference: VMamba-T (reduced depth) in eval mode, fp32 and under fp16 autocast, batch 2; the graph
  replayed on new inputs (copied into its static buffer) against the eager forward on those inputs;
- training step: two copies of one model with AdamW(capturable=True); the graphed copy takes its
  warm-up steps inside capture_train_step, the eager copy the same steps by hand; then both take the
  same further steps on new batches: losses and every weight must agree.
Both sides run the same kernels on the same data, so the tolerance is near fp32 rounding; a replay that
reads stale inputs, misses a kernel (work done on the host at capture time) or syncs inside the
capture fails here.
"""
from __future__ import annotations

import copy

import pytest
import torch

import models
import vmamba_kernels as vk
from models.graphs import capture_inference, capture_train_step

pytestmark = pytest.mark.gpu

SMALL = dict(depths=(1, 1, 2, 1), drop_path_rate=0.0)


def _impls():
    return [n for n in ("cuda", "triton") if n in {r["name"] for r in vk.list_impls() if r["available"]}]


def _model(impl):
    torch.manual_seed(0)
    return models.create_model("vmamba_t", impl=impl, num_classes=10, **SMALL).cuda()


@pytest.mark.parametrize("impl", ["cuda", "triton"])
@pytest.mark.parametrize("amp", [None, torch.float16], ids=["fp32", "fp16"])
def test_inference_replay_matches_eager(impl, amp):
    if impl not in _impls():
        pytest.skip(f"impl {impl} is not available here")
    m = _model(impl).eval()
    x0 = torch.randn(2, 3, 224, 224, device="cuda")
    fwd = capture_inference(m, x0, autocast=amp)
    for seed in (1, 2):
        x = torch.randn(2, 3, 224, 224, device="cuda", generator=torch.Generator("cuda").manual_seed(seed))
        got = fwd(x).clone()
        with torch.no_grad(), torch.autocast("cuda", dtype=amp or torch.float16, enabled=amp is not None):
            want = m(x)
        tol = 1e-4 if amp is None else 2e-3  # same kernels both ways: at most an fp16 ulp apart
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    a, b = fwd(x0).clone(), fwd(x).clone()
    assert not torch.equal(a, b)  # each replay reads the input just copied in


@pytest.mark.parametrize("impl", ["cuda", "triton"])
def test_training_step_replay_matches_eager(impl):
    if impl not in _impls():
        pytest.skip(f"impl {impl} is not available here")
    m_g = _model(impl).train()
    m_e = copy.deepcopy(m_g)
    crit = torch.nn.CrossEntropyLoss()
    opt_g = torch.optim.AdamW(m_g.parameters(), lr=1e-3, capturable=True)
    opt_e = torch.optim.AdamW(m_e.parameters(), lr=1e-3, capturable=True)
    g = torch.Generator("cuda").manual_seed(0)
    batches = [(torch.randn(2, 3, 224, 224, device="cuda", generator=g),
                torch.randint(0, 10, (2,), device="cuda", generator=g)) for _ in range(3)]

    def eager_step(x, y):
        opt_e.zero_grad(set_to_none=True)
        loss = crit(m_e(x), y)
        loss.backward()
        opt_e.step()
        return loss.detach()

    warmup = 2
    step = capture_train_step(m_g, crit, opt_g, *batches[0], warmup=warmup)
    for _ in range(warmup):  # what the capture ran before recording
        eager_step(*batches[0])
    for x, y in batches[1:]:
        got = step(x, y).detach().clone()
        want = eager_step(x, y)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    for (n, p_g), p_e in zip(m_g.named_parameters(), m_e.parameters()):
        torch.testing.assert_close(p_g, p_e, rtol=1e-4, atol=1e-5, msg=lambda s, n=n: f"{n}: {s}")
        assert p_g.grad is not None, n


@pytest.mark.parametrize("recompute", ["none", "all"])
def test_training_step_with_drop_path_under_autocast(recompute):
    """The training step bench.tp --cuda-graphs --train replays: stochastic depth on (its masks drawn inside
    the graph, fresh at every replay), fp16 autocast, and the route / GELU recompute's saved-tensor hooks
    captured too. Two replays on one batch give different losses (new masks) and finite gradients; with the
    masks off (drop_path_rate 0) a replay's loss equals the eager forward's."""
    impl = (_impls() or [None])[0]
    if impl is None:
        pytest.skip("no GPU impl available")
    crit = torch.nn.CrossEntropyLoss()
    g = torch.Generator("cuda").manual_seed(0)
    x = torch.randn(2, 3, 224, 224, device="cuda", generator=g)
    y = torch.randint(0, 10, (2,), device="cuda", generator=g)
    torch.manual_seed(0)
    m = models.create_model("vmamba_t", impl=impl, num_classes=10, depths=(1, 1, 2, 1), drop_path_rate=0.5)
    m = m.cuda().train().set_recompute(recompute)
    step = capture_train_step(m, crit, None, x, y, autocast=torch.float16, warmup=2)
    a, b = step(x, y).detach().clone(), step(x, y).detach().clone()
    assert torch.isfinite(a) and torch.isfinite(b) and not torch.equal(a, b)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    torch.manual_seed(0)
    m0 = models.create_model("vmamba_t", impl=impl, num_classes=10, **SMALL).cuda().train().set_recompute(recompute)
    step0 = capture_train_step(m0, crit, None, x, y, autocast=torch.float16, warmup=2)
    got = step0(x, y).detach().clone()
    with torch.autocast("cuda", dtype=torch.float16):
        want = crit(m0(x), y)
    torch.testing.assert_close(got, want.detach(), rtol=2e-3, atol=2e-3)


def test_ops_under_capture_issue_no_host_sync():
    """Every public op, captured alone with inputs that require grad (forward and backward): a host sync or
    a CPU read of a device value inside the capture raises (torch.cuda.set_sync_debug_mode errors on it)."""
    impls = _impls()
    if not impls:
        pytest.skip("no GPU impl available")
    from bench.overhead import OPS, _inputs, _step
    from vmamba_kernels import dispatch

    for impl in impls:
        for op in OPS:
            if op not in dispatch.get_backend(impl).ops:
                continue
            case = _inputs(op, "t_s4", "cuda", torch.float16, True, impl)
            step = _step(case, True)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    step()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            torch.cuda.set_sync_debug_mode("error")
            try:
                with torch.cuda.graph(graph):
                    step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
            graph.replay()
            torch.cuda.synchronize()
