"""Raw kernels of impl "torch": the log-depth parallel scan of reference/."""
from reference import affine_scan, selective_scan_parallel

from ._common import (add_layer_norm_bwd, add_layer_norm_fwd, cross_merge_fwd, cross_scan_fwd,  # noqa: F401
                      dwconv2d_bwd, dwconv2d_fwd, make_scan, make_ss2d_core)

selective_scan_fwd, selective_scan_bwd = make_scan(selective_scan_parallel, affine_scan)
ss2d_core_fwd, ss2d_core_bwd = make_ss2d_core(selective_scan_fwd, selective_scan_bwd)
