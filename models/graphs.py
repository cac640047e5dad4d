"""CUDA graphs for a model's inference forward and for a whole training step (static shapes).

At small batches a forward is bound by the host launching kernels, not by the GPU. A CUDA graph records
the launches once and replays them with one call:

    import models
    from models.graphs import capture_inference, capture_train_step

    m = models.create_model("vmamba_t", impl="cuda").cuda().eval()
    fwd = capture_inference(m, torch.randn(1, 3, 224, 224, device="cuda"), autocast=torch.float16)
    logits = fwd(x)              # x copied into the static input, graph replayed; x.shape must match
    logits = logits.clone()      # the output is a static buffer: the next call overwrites it

    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, capturable=True)   # capturable: step on the GPU
    step = capture_train_step(m, torch.nn.CrossEntropyLoss(), opt, x, y, autocast=torch.float16)
    loss = step(x, y)            # forward + loss + backward (+ optimizer step), replayed; loss is static too

Rules (torch.cuda.graphs): shapes, dtypes, devices and the code path are frozen at capture (a new batch
size needs a new capture); inputs must go through the returned callable (it copies them into the static
buffers); warm-up runs on a side stream before capture, so lazy work (Triton / NVRTC compilation,
cudnn.benchmark, the dispatcher's first choices) happens outside the graph. A training capture runs
`warmup` real steps first (with an optimizer, they update the weights: capture before loading the
weights you want to keep, or reload them afterwards). The vmamba_kernels ops are capture-safe: no host
synchronisation, no reads of device values on the host, allocations only through PyTorch's caching
allocator, launches on the current stream. Random ops (dropout, drop path) draw new numbers at each
replay (PyTorch registers its generator with the graph). GradScaler is not capturable (it reads
found-inf on the host): capture fp16 training without it, or use bfloat16.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Optional

import torch
import torch.nn as nn


def _need_cuda(what: str, *tensors: torch.Tensor) -> torch.device:
    if not torch.cuda.is_available():
        raise RuntimeError(f"{what}: CUDA graphs need a CUDA device, and none is visible here (run the model "
                           f"eagerly on the CPU instead)")
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{what}: the example inputs must be tensors, got {type(t).__name__}")
        if t.device.type != "cuda":
            raise ValueError(f"{what}: the example inputs must be CUDA tensors (CUDA graphs record GPU work); "
                             f"got a tensor on {t.device}")
    return tensors[0].device


def _autocast(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class GraphedInference:
    """A captured inference forward: `self(x)` copies x into the static input, replays, and returns the
    static output (overwritten by the next call: clone what you keep). `.graph`, `.static_input`,
    `.static_output` are the pieces."""

    def __init__(self, graph, static_input, static_output, pool):
        self.graph, self.static_input, self.static_output, self.pool = graph, static_input, static_output, pool

    def __call__(self, x: torch.Tensor):
        if x.shape != self.static_input.shape:
            raise ValueError(f"this graph was captured for inputs of shape {tuple(self.static_input.shape)}; "
                             f"got {tuple(x.shape)} (capture another graph for that shape)")
        self.static_input.copy_(x)
        self.graph.replay()
        return self.static_output


def capture_inference(model: nn.Module, example_input: torch.Tensor, *, autocast: Optional[torch.dtype] = None,
                      warmup: int = 3, pool=None) -> GraphedInference:
    """Capture `model(example_input)` under torch.no_grad() (and torch.autocast(dtype=autocast) when
    given) into a CUDA graph; returns a `GraphedInference`. The model is used as it is (call .eval()
    first for inference). `pool`: a graph memory pool to share with other captures
    (torch.cuda.graph_pool_handle())."""
    device = _need_cuda("capture_inference", example_input)
    if warmup < 1:
        raise ValueError(f"warmup must be >= 1 (lazy compilation must happen before capture); got {warmup}")
    static_input = example_input.detach().clone()
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side), torch.no_grad(), _autocast(device, autocast):
        for _ in range(warmup):
            model(static_input)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool), torch.no_grad(), _autocast(device, autocast):
        static_output = model(static_input)
    return GraphedInference(graph, static_input, static_output, pool)


class GraphedTrainStep:
    """A captured training step: `self(x, target)` copies both into the static buffers, replays forward,
    loss, backward (and the optimizer step), and returns the static loss tensor (read it with .item()
    only when you need it: that synchronises). Gradients live in the parameters' .grad (static)."""

    def __init__(self, graph, static_input, static_target, static_loss, pool):
        self.graph, self.static_input, self.static_target = graph, static_input, static_target
        self.static_loss, self.pool = static_loss, pool

    def __call__(self, x: torch.Tensor, target: torch.Tensor):
        for name, t, s in (("x", x, self.static_input), ("target", target, self.static_target)):
            if t.shape != s.shape:
                raise ValueError(f"this graph was captured for {name} of shape {tuple(s.shape)}; got {tuple(t.shape)}")
        self.static_input.copy_(x)
        self.static_target.copy_(target)
        self.graph.replay()
        return self.static_loss


def capture_train_step(model: nn.Module, loss_fn: Callable, optimizer: Optional[torch.optim.Optimizer],
                       example_input: torch.Tensor, example_target: torch.Tensor, *,
                       autocast: Optional[torch.dtype] = None, warmup: int = 3, pool=None) -> GraphedTrainStep:
    """Capture one training step: loss = loss_fn(model(x), target) under autocast (when given), backward,
    then optimizer.step() when an optimizer is given (it must be built with capturable=True where it has
    that option, e.g. Adam / AdamW / SGD with momentum keep their step counters on the GPU). Gradients are
    set to None before capture, so every replay writes them afresh (no accumulation across replays; do not
    call zero_grad between replays: the .grad tensors are the graph's static outputs).
    Runs `warmup` eager steps on a side stream first (they update the weights when there is an optimizer)."""
    device = _need_cuda("capture_train_step", example_input, example_target)
    if warmup < 1:
        raise ValueError(f"warmup must be >= 1 (lazy compilation must happen before capture); got {warmup}")
    if optimizer is not None:
        for group in optimizer.param_groups:
            if group.get("capturable") is False:
                raise ValueError(f"{type(optimizer).__name__} must be built with capturable=True to be captured "
                                 f"in a CUDA graph (its step counters then stay on the GPU)")
    static_input = example_input.detach().clone()
    static_target = example_target.detach().clone()

    def step():
        with _autocast(device, autocast):
            loss = loss_fn(model(static_input), static_target)
        loss.backward()
        if optimizer is not None:
            optimizer.step()
        return loss

    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            model.zero_grad(set_to_none=True)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    model.zero_grad(set_to_none=True)
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        static_loss = step()
    return GraphedTrainStep(graph, static_input, static_target, static_loss, pool)
