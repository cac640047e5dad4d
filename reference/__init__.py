"""Readable pure-torch definitions of the selective scan (and its implicit attention), the cross scan /
merge, the residual-add LayerNorm, the depthwise conv and
the SS2D core (their unfused chain)."""
from .cross_scan import cross_merge_ref, cross_scan_ref, route_index
from .dwconv import dwconv2d
from .norms import add_layer_norm
from .scan_attention import selective_scan_attention
from .selective_scan import (affine_scan, affine_scan_sequential, selective_scan_backward_ref,
                             selective_scan_parallel, selective_scan_ref)
from .ss2d_core import ss2d_core

__all__ = ["selective_scan_ref", "selective_scan_parallel", "affine_scan", "affine_scan_sequential",
           "selective_scan_backward_ref", "selective_scan_attention",
           "cross_scan_ref", "cross_merge_ref", "route_index", "add_layer_norm", "dwconv2d", "ss2d_core"]
