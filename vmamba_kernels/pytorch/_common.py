"""Raw-kernel adapter shared by the two pure-torch backends: the forward is a reference function,
the backward is the closed-form gradient of reference/selective_scan.py, built on the same
affine-scan primitive (parallel for "torch", a plain loop for "torch_sequential")."""
import torch

from reference import cross_merge_ref, cross_scan_ref, selective_scan_backward_ref
from reference import add_layer_norm as add_layer_norm_ref
from reference import dwconv2d as dwconv2d_ref


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


# ---- fused ops of the fast path: the reference's forward, closed-form / autograd backward ---------------
def _channels_last_view(t, channels_last):
    return t if channels_last else t.movedim(1, -1)


# the backward from the output reads weights of smaller magnitude as +-MIN_WEIGHT (a zero weight leaves no trace
# of xhat in y; the clamp keeps the division finite): csrc/layer_norm/layer_norm.h's kMinWeight
MIN_WEIGHT = 1e-5


def add_layer_norm_fwd(x, branch, weight, bias, branch_scale, eps, channels_last, out_dtype):
    y, s = add_layer_norm_ref(x, branch, weight, bias, branch_scale, eps, channels_last, out_dtype)
    y = y.contiguous()  # custom-op outputs are contiguous (the fake tensors say so)
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32  # stats in the compute dtype
    var, mean = torch.var_mean(_channels_last_view(s.to(ct), channels_last), dim=-1, unbiased=False)
    return y, s, mean.flatten(1).contiguous(), torch.rsqrt(var + eps).flatten(1).contiguous()


def add_layer_norm_bwd(dy, ds, s, weight, bias, mean, rstd, branch_scale, has_branch, channels_last, x_dtype,
                       from_y=False):
    """g = ds + rstd * (w dy - mean(w dy) - xhat mean(w dy xhat)) over the channels; dw = sum dy xhat.
    xhat = (s - mean) * rstd, or with from_y (s is then the norm's output y) (y - bias) / weight, |weight|
    clamped at MIN_WEIGHT (the cuda kernels' kMinWeight)."""
    ct = rstd.dtype
    B = s.shape[0]
    sc = _channels_last_view(s.to(ct), channels_last)
    dyc = _channels_last_view(dy.to(ct), channels_last)
    r = rstd.view(*sc.shape[:-1], 1)
    if from_y:
        w = weight.to(ct)
        w = torch.where(w.abs() < MIN_WEIGHT, torch.where(w < 0, -MIN_WEIGHT, MIN_WEIGHT), w)
        xhat = (sc - (bias.to(ct) if bias is not None else 0.0)) / w
    else:
        xhat = (sc - mean.view(*sc.shape[:-1], 1)) * r
    wdy = dyc * weight.to(ct)
    g = r * (wdy - wdy.mean(-1, keepdim=True) - xhat * (wdy * xhat).mean(-1, keepdim=True))
    dweight = (dyc * xhat).reshape(-1, sc.shape[-1]).sum(0).to(weight.dtype)
    dbias = dyc.reshape(-1, sc.shape[-1]).sum(0).to(weight.dtype) if bias is not None else None
    g = g if channels_last else g.movedim(-1, 1)
    if ds is not None:
        g = g + ds.to(ct)
    dbranch = None
    if has_branch:  # its own tensor: custom-op outputs may not alias each other
        dbranch = g.clone() if branch_scale is None else g * branch_scale.to(ct).view(B, *([1] * (g.dim() - 1)))
        dbranch = dbranch.to(x_dtype).contiguous()
    return g.to(x_dtype).contiguous(), dbranch, dweight, dbias


def dwconv2d_fwd(x, weight, bias, act, channels_last):
    return dwconv2d_ref(x, weight, bias, act, channels_last).contiguous()


def _act_grad(z, act):
    if act == "silu":
        sig = torch.sigmoid(z)
        return sig * (1 + z * (1 - sig))
    if act == "gelu":  # exact erf GELU: Phi(z) + z phi(z)
        return 0.5 * (1 + torch.erf(z * 0.5 ** 0.5)) + z * torch.exp(-0.5 * z * z) * (2 * torch.pi) ** -0.5
    return torch.ones_like(z)


def dwconv2d_bwd(dy, x, weight, bias, act, channels_last):
    """Closed form (no autograd below the custom op): dz = dy act'(z), dx = conv^T(dz), dw = x * dz."""
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32
    xc, dyc = x.to(ct), dy.to(ct)
    if channels_last:
        xc, dyc = xc.movedim(-1, 1), dyc.movedim(-1, 1)
    C, K = weight.shape[0], weight.shape[-1]
    w = weight.to(ct)
    z = torch.nn.functional.conv2d(xc, w, None if bias is None else bias.to(ct), padding=K // 2, groups=C)
    dz = dyc * _act_grad(z, act)
    dx = torch.nn.grad.conv2d_input(xc.shape, w, dz, padding=K // 2, groups=C)
    dw = torch.nn.grad.conv2d_weight(xc, w.shape, dz, padding=K // 2, groups=C)
    db = dz.sum((0, 2, 3)).to(weight.dtype) if bias is not None else None
    if channels_last:
        dx = dx.movedim(1, -1)
    return dx.to(x.dtype).contiguous(), dw.to(weight.dtype), db


# ---- fused SS2D core: the raw-kernel contract built from this backend's own pieces ------------------------
def _route_order(xdbl, mode, H, W):
    """xdbl (B, L, K, C) in pixel order -> (B, K, C, L) in each route's order: route k reads row (p, k) at the
    pixel p it visits, i.e. the cross scan of channel block k taken on route k."""
    Bn, L, K, C = xdbl.shape
    xs = cross_scan_fwd(xdbl.reshape(Bn, H, W, K * C), mode, True)  # (B, 4, K*C, L)
    return torch.stack([xs[:, k, k * C:(k + 1) * C] for k in range(K)], 1)


def _pixel_order(dr, mode, H, W):
    """The adjoint of _route_order: (B, K, C, L) route order -> (B, L, K, C) pixel order."""
    Bn, K, C, L = dr.shape
    full = dr.new_zeros(Bn, K, K * C, L)
    for k in range(K):
        full[:, k, k * C:(k + 1) * C] = dr[:, k]
    return cross_merge_fwd(full, H, W, mode, True).view(Bn, L, K, C)


def make_ss2d_core(scan_fwd, scan_bwd):
    """ss2d_core_fwd / ss2d_core_bwd (SS2D_CORE_CONTRACT.md) as the unfused chain of this backend's cross scan,
    selective scan and cross merge, in the compute dtype (float32, float64 for float64 x): every torch path
    runs through the op's shared composition (_library.define_ss2d_core)."""

    def routes(x, xdbl, dt_w, mode, channels_last):
        ct = torch.float64 if x.dtype == torch.float64 else torch.float32
        Bn, L, K, C = xdbl.shape
        Dc, R = dt_w.shape[1], dt_w.shape[2]
        H, W = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[3])
        xs = cross_scan_fwd(x, mode, channels_last).to(ct).reshape(Bn, K * Dc, L)
        xr = _route_order(xdbl.to(ct), mode, H, W)
        dts, Bs, Cs = torch.split(xr, [R, (C - R) // 2, (C - R) // 2], dim=2)
        delta = torch.einsum("bkrl,kdr->bkdl", dts, dt_w.to(ct)).reshape(Bn, K * Dc, L)
        return xs, dts, delta, Bs.contiguous(), Cs.contiguous(), (H, W), ct

    def ss2d_core_fwd(x, xdbl, dt_w, A, D, delta_bias, mode, channels_last, delta_softplus, out_dtype):
        xs, _, delta, Bs, Cs, (H, W), ct = routes(x, xdbl, dt_w, mode, channels_last)
        ys, _, _ = scan_fwd(xs, delta, A, Bs, Cs, D, delta_bias, delta_softplus, ct)
        Bn, K = xdbl.shape[0], xdbl.shape[2]
        return cross_merge_fwd(ys.view(Bn, K, -1, H * W), H, W, mode, channels_last).to(out_dtype)

    def ss2d_core_bwd(x, xdbl, dt_w, A, D, delta_bias, dy, mode, channels_last, delta_softplus):
        xs, dts, delta, Bs, Cs, (H, W), ct = routes(x, xdbl, dt_w, mode, channels_last)
        Bn, L, K, _ = xdbl.shape
        _, _, aux = scan_fwd(xs, delta, A, Bs, Cs, D, delta_bias, delta_softplus, ct)
        dout = cross_scan_fwd(dy.to(ct), mode, channels_last).reshape(xs.shape)  # cross merge's adjoint
        du, ddelta, dA, dB, dC, dD, dbias = scan_bwd(xs, delta, A, Bs, Cs, D, delta_bias, delta_softplus, dout, aux)
        Dc = dt_w.shape[1]
        ddelta = ddelta.view(Bn, K, Dc, L)
        ddts = torch.einsum("bkdl,kdr->bkrl", ddelta, dt_w.to(ct))
        ddt_w = torch.einsum("bkdl,bkrl->kdr", ddelta, dts)
        dxdbl = _pixel_order(torch.cat([ddts, dB, dC], 2), mode, H, W)
        dx = cross_merge_fwd(du.view(Bn, K, Dc, L), H, W, mode, channels_last)
        return dx.contiguous(), dxdbl.contiguous(), ddt_w, dA, dD, dbias

    return ss2d_core_fwd, ss2d_core_bwd
