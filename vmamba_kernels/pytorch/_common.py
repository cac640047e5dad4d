"""Raw-kernel adapter shared by the two pure-torch backends: the forward is a reference function,
the backward is the closed-form gradient of reference/selective_scan.py, built on the same
affine-scan primitive (parallel for "torch", a plain loop for "torch_sequential")."""
import torch

from reference import cross_merge_ref, cross_scan_ref, selective_scan_backward_ref


def make_scan(forward, scan):
    def selective_scan_fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype):
        y, last = forward(u, delta, A, B, C, D, delta_bias, delta_softplus, True, out_dtype)
        # custom-op outputs must own their storage (last may be a view into the scan's states)
        fresh = lambda t: t.clone(memory_format=torch.contiguous_format)  # noqa: E731
        return fresh(y), fresh(last), A.new_empty(0, dtype=torch.float32)

    def selective_scan_bwd(u, delta, A, B, C, D, delta_bias, delta_softplus, dout, aux):
        return selective_scan_backward_ref(u, delta, A, B, C, D, delta_bias, delta_softplus, dout, scan=scan)

    return selective_scan_fwd, selective_scan_bwd


def cross_scan_fwd(x, mode, channels_last):
    return cross_scan_ref(x, mode, channels_last).contiguous()


def cross_merge_fwd(y, H, W, mode, channels_last):
    return cross_merge_ref(y, H, W, mode, channels_last)
