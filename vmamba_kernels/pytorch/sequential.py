"""Raw kernels of impl "torch_sequential": the step-by-step definition of reference/."""
from reference import affine_scan_sequential, selective_scan_ref

from ._common import cross_merge_fwd, cross_scan_fwd, make_scan  # noqa: F401

selective_scan_fwd, selective_scan_bwd = make_scan(selective_scan_ref, affine_scan_sequential)
