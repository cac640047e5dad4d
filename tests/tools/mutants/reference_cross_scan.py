"""Mutants of reference/cross_scan.py, the oracle of VMamba's four scan routes (route_index, cross_scan_ref) and their
adjoint (cross_merge_ref).
Campaign of 2026-12-07: C13 and C22 survived tests/test_reference.py (21 of 23 killed);
tests/test_reference_oracle.py kills them (all 23 now).
Run: python -m tests.tools.mutate tests/tools/mutants/reference_cross_scan.py"""

FILE = "reference/cross_scan.py"
TESTS = ["tests/test_reference.py", "tests/test_reference_oracle.py"]

# (id, old text, new text, what the mutant breaks[, occurrence of old from 0])
MUTANTS = [
    # route_index
    ('C01', '.view(H, W).t().reshape(L)', '.view(W, H).t().reshape(L)', 'route_index: column route of a W x H map'),
    ('C02', '"cross2d": (row, col, row.flip(0), col.flip(0)),', '"cross2d": (row, col, row, col.flip(0)),',
     'route_index: cross2d route 2 not reversed'),
    ('C03', '"cross2d": (row, col, row.flip(0), col.flip(0)),', '"cross2d": (row, col, col.flip(0), row.flip(0)),',
     'route_index: cross2d routes 2 and 3 swapped'),
    ('C04', '"bidi": (row, row, row.flip(0), row.flip(0)),', '"bidi": (row, row.flip(0), row, row.flip(0)),',
     'route_index: bidi routes interleaved'),
    ('C05', '"unidi": (row, row, row, row),', '"unidi": (row, row, row, row.flip(0)),',
     'route_index: unidi route 3 reversed'),
    ('C06', 'col = torch.arange(L, device=device).view(H, W).t().reshape(L)',
     'col = torch.arange(L, device=device).view(H, W).reshape(L)', 'route_index: column route is the row route'),
    # cross_scan_ref
    ('C07', 'return x.permute(0, 3, 1, 2) if channels_last', 'return x.permute(0, 3, 2, 1) if channels_last',
     'channels_last: H and W swapped when moving channels first'),
    ('C08', 'col = x.transpose(2, 3).reshape(Bn, C, H * W)', 'col = x.reshape(Bn, C, H * W)',
     'scan: column route reads row-major'),
    ('C09', 'routes = (row, col, row.flip(-1), col.flip(-1))', 'routes = (row, col, col.flip(-1), row.flip(-1))',
     'scan: cross2d routes 2 and 3 swapped'),
    ('C10', 'routes = (row, col, row.flip(-1), col.flip(-1))', 'routes = (row, col, row.flip(-1), col)',
     'scan: cross2d route 3 not reversed'),
    ('C11', 'routes = (row, row, row, row)', 'routes = (row, row, row, row.flip(-1))', 'scan: unidi route 3 reversed'),
    ('C12', 'routes = (row, row, row.flip(-1), row.flip(-1))', 'routes = (row, row.flip(-1), row, row.flip(-1))',
     'scan: bidi routes interleaved'),
    ('C13', 'elif mode == "bidi":\n        routes', 'elif True:  # any other mode\n        routes',
     'scan: an unknown mode is taken as bidi instead of raising'),
    ('C14', 'return torch.stack(routes, dim=1)', 'return torch.stack(routes, dim=1).transpose(1, 2).reshape('
     'Bn, 4, C, H * W)', 'scan: routes and channels interleaved in the output'),
    # cross_merge_ref
    ('C15', 'row = y0 + y2.flip(-1)', 'row = y0 + y2', 'merge: cross2d route 2 not reversed back'),
    ('C16', 'col = y1 + y3.flip(-1)', 'col = y1 + y3', 'merge: cross2d route 3 not reversed back'),
    ('C17', 'col.view(Bn, C, W, H).transpose(2, 3)', 'col.view(Bn, C, H, W)',
     'merge: column routes added back in row-major order'),
    ('C18', 'row = y0 + y2.flip(-1)\n        col = y1 + y3.flip(-1)', 
     'row = y0 + y3.flip(-1)\n        col = y1 + y2.flip(-1)',
     'merge: cross2d routes 2 and 3 swapped'),
    ('C19', 'out = (y0 + y1 + y2 + y3).view(Bn, C, H, W)', 'out = (y0 + y1 + y2).view(Bn, C, H, W)',
     'merge: unidi route 3 dropped'),
    ('C20', 'out = (y0 + y1 + (y2 + y3).flip(-1))', 'out = (y0 + y2 + (y1 + y3).flip(-1))',
     'merge: bidi routes 1 and 2 swapped'),
    ('C21', 'out.permute(0, 2, 3, 1).contiguous() if channels_last', 
     'out.transpose(1, 3).contiguous() if channels_last',
     'merge: channels_last output with H and W swapped'),
    ('C22', 'elif mode == "bidi":\n        out', 'elif True:  # any other mode\n        out',
     'merge: an unknown mode is taken as bidi instead of raising'),
    ('C23', 'y0, y1, y2, y3 = y.unbind(1)', 'y0, y1, y2, y3 = y.flip(1).unbind(1)',
     'merge: routes read in reverse order'),
]
