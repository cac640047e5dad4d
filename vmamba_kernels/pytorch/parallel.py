"""Raw kernels of impl "torch": the log-depth parallel scan of reference/."""
from reference import affine_scan, selective_scan_parallel

from ._common import cross_merge_fwd, cross_scan_fwd, make_scan  # noqa: F401

selective_scan_fwd, selective_scan_bwd = make_scan(selective_scan_parallel, affine_scan)
