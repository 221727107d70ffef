"""The fused evaluator of the package's neural vector fields: one pass for drift and diffusion.

``MLPDriftDiffusion``, ``CDEFunc`` and ``MarketModel`` hold their MLPs as one
:class:`FusedMLPs` module; the solvers evaluate them through :class:`FusedField`, built once
per solve from pre-folded tensors:

* drift and diffusion share one input matmul: [W_f; W_g] x, one ``addmm`` for both nets;
* time enters as a rank-1 bias, b + t w_t, instead of a concatenated input column;
* the nets may read a slice of the state, x = y[:, lo:] (``input_start``): the market model's
  nets see its latent state, never the price level;
* LipSwish, x sigmoid(x) * 0.909, is ``silu(x)`` with the 0.909 folded into the next layer;
* a tanh output is computed as 2 sigmoid(2u) - 1 with the factor 2 folded into the output
  layer (``torch.tanh`` is 2-3x slower than ``torch.sigmoid`` on the CPU);
* g is laid out noise-major, a contiguous (batch, m, d) tensor returned as its (batch, d, m)
  transposed view; products g dW are batched matmuls on that layout, or, for m <= 4, a few
  contiguous ``addcmul`` (``bmm`` on such tiny matrices runs at a few percent of the peak);
* the adjoint's per-step VJP is written out by hand (:meth:`FusedMLPs.backward`): no autograd
  graph is recorded and weight cotangents are accumulated by the GEMMs themselves.

Log-price rows (:class:`LogPriceRows`): the first ``count`` rows of the state may be declared
log-prices whose drift is ``rate + var_coef |g_i|^2`` (g_i the row's diffusion at the same
point), stepped by the solvers at the left point; the market model's risk-neutral channel is
such a field (``_models/_market.py``).

References:
    Kidger, Foster, Li, Lyons (2021), Neural SDEs as Infinite-Dimensional GANs,
    arXiv:2102.03657 (architecture: MLPs with LipSwish, time input, tanh outputs).
    Chen, Behrmann, Duvenaud, Jacobsen (2019), Residual Flows, arXiv:1906.02735 (LipSwish).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuralsde_fin._solvers._base import VectorField

#: LipSwish(x) = LIPSWISH_SCALE * x * sigmoid(x) is 1-Lipschitz.
LIPSWISH_SCALE = 0.909

#: Output activations by name (as the modules' ``*_final`` arguments take them).
FINALS = {None: None, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "softplus": F.softplus}

#: Products with g by ``addcmul`` over the noise channels up to this many channels.
SMALL_NOISE = 4


def tanh_from_sigmoid(u2: Tensor) -> Tensor:
    """tanh(u) given u2 = 2u: 2 sigmoid(2u) - 1 (the evaluator's tanh; the 2 is folded)."""
    return torch.sigmoid(u2).mul(2.0).sub(1.0)


#: Cotangent of an output activation's input: ``grad(u, y, a)`` for y = fn(u) and the cotangent
#: a of y. The hand-written VJP covers these; any other activation takes the autograd VJP.
FINAL_GRADS = {
    None: lambda u, y, a: a,
    torch.tanh: lambda u, y, a: a * (1.0 - y * y),
    tanh_from_sigmoid: lambda u, y, a: a * (0.5 - 0.5 * y * y),
    torch.sigmoid: lambda u, y, a: a * (y * (1.0 - y)),
    F.softplus: lambda u, y, a: a * torch.sigmoid(u),
}


def _uniform(shape: tuple[int, ...], fan_in: int) -> Tensor:
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(shape).uniform_(-bound, bound)


class FusedMLPs(nn.Module):
    """``n_nets`` MLPs of equal width and depth on the same input, stored for fused evaluation.

    Input layer of all nets: one matrix (n_nets * width, in_features) plus a time column (a
    zero buffer with ``time_input=False``); hidden layers: stacked (n_layers, n_nets, width,
    width); output layers: one per net. The parameters are those of ``nn.Linear`` layers on
    cat([t, x]) (same orientation), so ``nn.Sequential`` twins share them exactly.
    """

    def __init__(
        self, in_features: int, outs: list[int], width: int, depth: int, *,
        time_input: bool = True,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1 hidden layer, got {depth}")
        k = len(outs)
        fan = in_features + 1
        self.width, self.depth, self.outs = width, depth, list(outs)
        self.time_input = bool(time_input)
        self.in_weight = nn.Parameter(_uniform((k * width, in_features), fan))
        if self.time_input:
            self.in_time = nn.Parameter(_uniform((k * width,), fan))
        else:
            self.register_buffer("in_time", torch.zeros(k * width))
        self.in_bias = nn.Parameter(_uniform((k * width,), fan))
        self.hidden_weight = nn.Parameter(_uniform((depth - 1, k, width, width), width))
        self.hidden_bias = nn.Parameter(_uniform((depth - 1, k, 1, width), width))
        self.out_weight = nn.ParameterList(nn.Parameter(_uniform((o, width), width)) for o in outs)
        self.out_bias = nn.ParameterList(nn.Parameter(_uniform((o,), width)) for o in outs)

    def folded(self, noise_major: int = 0, finals: tuple = ()) -> list[Tensor]:
        """The evaluator's tensors: transposed weights with the LipSwish scale folded in.

        With ``noise_major = m > 0`` the last net's outputs, a (d, m) matrix in row-major order,
        are permuted to (m, d) order (g noise-major). Nets whose entry of ``finals`` is tanh get
        their output layer doubled (the evaluator computes tanh(u) as 2 sigmoid(2u) - 1).
        """
        s = LIPSWISH_SCALE
        ts = [self.in_weight.t(), self.in_time, self.in_bias]
        ts.append((s * self.hidden_weight).transpose(-1, -2))
        ts.append(self.hidden_bias)
        outs_w, outs_b = list(self.out_weight), list(self.out_bias)
        if noise_major:
            w, b, m = outs_w[-1], outs_b[-1], noise_major
            outs_w[-1] = w.view(-1, m, w.shape[1]).transpose(0, 1).reshape(w.shape)
            outs_b[-1] = b.view(-1, m).t().reshape(b.shape)
        for i, fn in enumerate(finals):
            if fn is torch.tanh:
                outs_w[i], outs_b[i] = 2.0 * outs_w[i], 2.0 * outs_b[i]
        ts.extend((s * w).t() for w in outs_w)
        ts.extend(outs_b)
        return ts

    @staticmethod
    def evaluate(
        w: list[Tensor],
        t: Tensor,
        x: Tensor,
        n: int,
        width: int,
        scratch: dict[str, Tensor] | None = None,
    ) -> list[Tensor]:
        """Outputs of all nets at (t, x) from the folded tensors ``w`` (before activations).

        With ``scratch`` (a dict of buffers; no autograd) the hidden activations and the last
        net's output are written into buffers kept across calls instead of fresh allocations:
        at batch 4096 they are megabytes each, and fresh ones cost page faults on every step.
        The last output is then only valid until the next call with the same ``scratch``.
        """
        in_w, in_t, in_b, hid_w, hid_b = w[:5]
        inplace = not torch.is_grad_enabled()  # sampling: no autograd, reuse the buffers
        batch = x.shape[0]
        buf = _Scratch(scratch, x) if scratch is not None and inplace else None
        bias = torch.addcmul(in_b, in_t, t)
        if buf is None:
            h = F.silu(torch.addmm(bias, x, in_w), inplace=inplace)
        else:
            h = F.silu(torch.addmm(bias, x, in_w, out=buf("in", (batch, n * width))), inplace=True)
        if hid_w.shape[0]:
            h = h.view(batch, n, width).transpose(0, 1)
            for i in range(hid_w.shape[0]):
                if buf is None:
                    h = torch.baddbmm(hid_b[i], h, hid_w[i])
                else:
                    h = torch.baddbmm(
                        hid_b[i], h, hid_w[i], out=buf(f"h{i % 2}", (n, batch, width))
                    )
                h = F.silu(h, inplace=inplace)
            hs = h.unbind(0)
        else:
            hs = h.view(batch, n, width).unbind(1)
        outs = [torch.addmm(w[5 + n + i], hs[i], w[5 + i]) for i in range(n - 1)]
        last = w[5 + n - 1].shape[1]
        out = None if buf is None else buf("out", (batch, last))
        outs.append(torch.addmm(w[5 + 2 * n - 1], hs[n - 1], w[5 + n - 1], out=out))
        return outs

    @staticmethod
    def record(
        w: list[Tensor], t: Tensor, x: Tensor, n: int, width: int
    ) -> tuple[list[Tensor], tuple]:
        """:meth:`evaluate` (without autograd) keeping the activations :meth:`backward` needs.

        Returns the outputs of all nets and the cache ``(t, x, sigs, hacts)``: per hidden layer
        (the input layer first) s = sigmoid(pre) and its output h = pre s = silu(pre). With both
        kept, the backward pass needs no exponential: silu'(pre) = s + h (1 - s).
        """
        in_w, in_t, in_b, hid_w, hid_b = w[:5]
        batch = x.shape[0]
        pre = torch.addmm(torch.addcmul(in_b, in_t, t), x, in_w)
        s = torch.sigmoid(pre)
        h = pre * s  # (batch, n * width)
        sigs, hacts = [s], [h]
        if hid_w.shape[0]:
            h = h.view(batch, n, width).transpose(0, 1)
            for i in range(hid_w.shape[0]):
                pre = torch.baddbmm(hid_b[i], h, hid_w[i])
                s = torch.sigmoid(pre)
                h = pre * s  # (n, batch, width)
                sigs.append(s)
                hacts.append(h)
        hs = FusedMLPs._last_hidden(hacts, n, width)
        outs = [torch.addmm(w[5 + n + i], hs[i], w[5 + i]) for i in range(n)]
        return outs, (t, x, sigs, hacts)

    @staticmethod
    def _last_hidden(hacts: list[Tensor], n: int, width: int) -> tuple[Tensor, ...]:
        """The last hidden layer's output of each net, (batch, width) each."""
        if len(hacts) > 1:
            return hacts[-1].unbind(0)
        return hacts[0].view(hacts[0].shape[0], n, width).unbind(1)

    @staticmethod
    def backward(
        w: list[Tensor],
        cache: tuple,
        d_outs: list[Tensor],
        n: int,
        width: int,
        grads: list[Tensor | None],
    ) -> Tensor:
        r"""Hand-written VJP of :meth:`record`: the cotangent of the input x.

        With cotangents ``d_outs`` of the nets' outputs (before their output activations),
        replaces every ``grads[k]`` by ``grads[k]`` plus the cotangent of the folded tensor
        ``w[k]`` (entries that are None are skipped) and returns that of x. Per layer, for
        pre = h W + b and h' = silu(pre): dW += h^T d, db += 1^T d, dh = d W^T and
        d = dh' (s + h' (1 - s)) with s = sigmoid(pre); the weight cotangents are accumulated by
        the GEMMs themselves (``addmm``, ``baddbmm`` with the accumulator as input). The
        accumulation is out of place: in a compiled step that saves copying every accumulator
        back into its input buffer.

        Shape:
            d_outs[i]: (batch, outs[i]); returns (batch, in_features).
        """
        t, x, sigs, hacts = cache
        in_w, hid_w = w[0], w[3]
        n_hidden = hid_w.shape[0]
        hs = FusedMLPs._last_hidden(hacts, n, width)
        d_hs = []
        for i in range(n):
            d = d_outs[i]
            if grads[5 + i] is not None:
                grads[5 + i] = torch.addmm(grads[5 + i], hs[i].t(), d)
            if grads[5 + n + i] is not None:
                grads[5 + n + i] = grads[5 + n + i] + d.sum(0)
            d_hs.append(torch.mm(d, w[5 + i].t()))
        batch = x.shape[0]
        if n_hidden:
            d_h = torch.stack(d_hs)  # (n, batch, width)
            d_ws, d_bs = [], []  # per hidden layer, last first
            for i in range(n_hidden - 1, -1, -1):
                d_pre = _silu_grad(d_h, sigs[i + 1], hacts[i + 1])
                h_in = hacts[i] if i else hacts[0].view(batch, n, width).transpose(0, 1)
                if grads[3] is not None:
                    d_ws.append(torch.baddbmm(grads[3][i], h_in.transpose(1, 2), d_pre))
                if grads[4] is not None:
                    d_bs.append(d_pre.sum(1, keepdim=True))
                d_h = torch.bmm(d_pre, hid_w[i].transpose(1, 2))
            if grads[3] is not None:
                grads[3] = torch.stack(d_ws[::-1])
            if grads[4] is not None:
                grads[4] = grads[4] + torch.stack(d_bs[::-1])
            d_h = d_h.transpose(0, 1).reshape(batch, n * width)
        else:
            d_h = d_hs[0] if n == 1 else torch.cat(d_hs, 1)
        d_pre = _silu_grad(d_h, sigs[0], hacts[0])
        if grads[0] is not None:
            grads[0] = torch.addmm(grads[0], x.t(), d_pre)
        if grads[1] is not None or grads[2] is not None:
            col = d_pre.sum(0)
            if grads[1] is not None:
                grads[1] = torch.addcmul(grads[1], col, t)
            if grads[2] is not None:
                grads[2] = grads[2] + col
        return torch.mm(d_pre, in_w.t())


def _silu_grad(d: Tensor, s: Tensor, h: Tensor) -> Tensor:
    """Cotangent of pre from the cotangent d of h = silu(pre) = pre s: d (s + h (1 - s))."""
    return torch.addcmul(s, h, 1.0 - s).mul_(d)


class _Scratch:
    """Buffers of a fused evaluation, kept across calls (re-allocated when a shape changes)."""

    def __init__(self, store: dict[str, Tensor], like: Tensor) -> None:
        self.store, self.like = store, like

    def __call__(self, key: str, shape: tuple[int, ...]) -> Tensor:
        b = self.store.get(key)
        if (
            b is None
            or b.shape != shape
            or b.dtype != self.like.dtype
            or b.device != self.like.device
        ):
            b = self.store[key] = self.like.new_empty(shape)
        return b


@dataclass(frozen=True)
class LogPriceRows:
    r"""The first ``count`` state rows are log-prices stepped by log-Euler at the left point.

    .. math::
        x_{i, n+1} = x_{i, n} + (a_i + c_i \lVert \lambda g_i(t_n, z_n) \rVert^2)\,\Delta t
                     + \lambda g_i(t_n, z_n)\,\Delta W_n, \qquad i < \text{count},

    with g_i the field's diffusion row at the solver's state z_n (the left point, so the
    increment is independent of Delta W_n given the past) and lambda the optional volatility
    scale. With a_i = r - q_i and c_i = -1/2 (in the rows' units) exp(x_i) e^{-(r - q_i) t} is an
    exact discrete-time martingale. The other rows are stepped by reversible Heun as usual; the
    field's nets must not read these rows (``input_start >= count``).

    Attributes:
        count: number of leading log-price rows.
        rate: a_i, shape (count,).
        var_coef: c_i, shape (count,).
        scale: lambda: None (1), a float, or a tensor with one value per path (batch, 1)
            that may require grad (a per-path or differentiable scale runs the eager step).
    """

    count: int
    rate: Tensor
    var_coef: Tensor
    scale: float | Tensor | None = None


class FusedField(VectorField):
    """Evaluator of a fused module (``MLPDriftDiffusion``, ``CDEFunc``, ``MarketModel``).

    The module provides ``net`` (a :class:`FusedMLPs`), ``noise_type``, ``_g_shape``,
    ``_finals`` (output activations, one per net) and ``input_start`` (first state column the
    nets read). ``log_price`` declares log-price rows (:class:`LogPriceRows`).
    """

    def __init__(
        self,
        module: nn.Module,
        tensors: list[Tensor] | None = None,
        log_price: LogPriceRows | None = None,
    ) -> None:
        self.module = module
        self.diagonal = module.noise_type == "diagonal"
        self.shape_g = module._g_shape
        self.in_lo = int(getattr(module, "input_start", 0))
        finals = module._finals
        if tensors is None:
            tensors = module.net.folded(0 if self.diagonal else self.shape_g[1], finals)
        self.tensors = tensors
        self.finals = tuple(tanh_from_sigmoid if fn is torch.tanh else fn for fn in finals)
        self.n = len(module.net.outs)
        self.width = module.net.width
        self.small = not self.diagonal and self.shape_g[1] <= SMALL_NOISE
        if log_price is not None and (self.n != 2 or log_price.count > self.in_lo):
            raise ValueError(
                f"log-price rows need a drift / diffusion field whose nets skip them "
                f"(count {log_price.count} > input_start {self.in_lo})"
            )
        self.log_price = log_price
        self.zero = None
        self.scratch: dict[str, Tensor] | None = None
        self._param_index: list[int | None] | None = None

    @property
    def euler_rows(self) -> int:
        """Leading state rows stepped at the left point (log-price rows), 0 if none."""
        return 0 if self.log_price is None else self.log_price.count

    def params(self) -> list[Tensor]:
        return [t for t in self.tensors if t.requires_grad]

    def for_backward(self) -> tuple[FusedField, list[Tensor]]:
        if self.log_price is not None:
            raise ValueError("the adjoint does not support log-price rows (sampling only)")
        leaves = [t.detach().requires_grad_(t.requires_grad) for t in self.tensors]
        field = FusedField(self.module, leaves)
        return field, [t for t in leaves if t.requires_grad]

    def _input(self, y: Tensor) -> Tensor:
        return y if self.in_lo == 0 else y[:, self.in_lo :]

    def f_and_g(self, t: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._f_and_g(t, y, None)

    def f_and_g_scratch(self, t: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``f_and_g`` for a caller that uses g at once (without autograd): g lives in a buffer
        that the next call overwrites; f is a fresh tensor."""
        if self.scratch is None:
            self.scratch = {}
        return self._f_and_g(t, y, self.scratch)

    def _f_and_g(self, t: Tensor, y: Tensor, scratch) -> tuple[Tensor, Tensor]:
        outs = FusedMLPs.evaluate(self.tensors, t, self._input(y), self.n, self.width, scratch)
        f, g = self._fields([o if fn is None else fn(o) for o, fn in zip(outs, self.finals)], y)
        if self.log_price is not None:
            f, g = self._log_price_rows(f, g)
        return f, g

    def _log_price_rows(self, f: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
        """Drift a + c |lambda g_i|^2 and diffusion lambda g_i on the log-price rows."""
        lp = self.log_price
        e = lp.count
        gp = g[:, :e]
        if lp.scale is not None:
            lam = lp.scale
            if torch.is_tensor(lam):
                lam = lam.reshape(-1, 1) if self.diagonal else lam.reshape(-1, 1, 1)
            gp = gp * lam
            g = torch.cat([gp, g[:, e:]], dim=1)
        var = gp.pow(2) if self.diagonal else gp.pow(2).sum(-1)
        fp = lp.rate.to(f) + lp.var_coef.to(f) * var
        return torch.cat([fp, f[:, e:]], dim=1), g

    @property
    def final_grads(self) -> tuple | None:
        """Derivatives of the output activations (``FINAL_GRADS``), None if one is unknown."""
        try:
            return tuple(FINAL_GRADS[fn] for fn in self.finals)
        except KeyError:
            return None

    def _grad_slots(self, grads: list[Tensor | None]) -> list[Tensor | None]:
        """Per folded tensor, its accumulator in ``grads`` (aligned with :meth:`params`; None
        entries become zeros), or None for tensors that do not require grad."""
        index = self._param_index
        if index is None:
            index, j = [], 0
            for w in self.tensors:
                index.append(j if w.requires_grad else None)
                j += w.requires_grad
            self._param_index = index
        for w, j in zip(self.tensors, index):
            if j is not None and grads[j] is None:  # contiguous, as the accumulations return
                grads[j] = torch.zeros(w.shape, dtype=w.dtype, device=w.device)
        return [None if j is None else grads[j] for j in index]

    def record(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor, Any]:
        """f, g at (t, z) and the activations of the hand-written :meth:`vjp` (no autograd)."""
        if self.final_grads is None:
            return super().record(t, z)
        with torch.no_grad():
            outs, cache = FusedMLPs.record(self.tensors, t, self._input(z), self.n, self.width)
            ys = [o if fn is None else fn(o) for o, fn in zip(outs, self.finals)]
            f, g = self._fields(ys, z)
        return f, g, (cache, outs, ys)

    def vjp(self, rec: Any, a_f: Tensor, a_g: Tensor, grads: list[Tensor | None]) -> Tensor | None:
        """Hand-written VJP (see :meth:`FusedMLPs.backward`): no autograd graph or engine.

        ``grads`` is aligned with :meth:`params`; None entries become zero accumulators.
        """
        finals = self.final_grads
        if finals is None:
            return super().vjp(rec, a_f, a_g, grads)
        cache, outs, ys = rec
        batch = ys[-1].shape[0]
        with torch.no_grad():
            # cotangent of g in the nets' output layout (noise-major for general noise)
            a_g = (a_g if self.diagonal else a_g.transpose(1, 2)).reshape(batch, -1)
            if self.n == 1:
                cots = [a_g]
            else:
                cots = [a_f if torch.is_tensor(a_f) else torch.full_like(ys[0], a_f), a_g]
            d_outs = [fg(u, y, a) for fg, u, y, a in zip(finals, outs, ys, cots)]
            slots = self._grad_slots(grads)
            dx = FusedMLPs.backward(self.tensors, cache, d_outs, self.n, self.width, slots)
            for k, j in enumerate(self._param_index):  # the updated accumulators
                if j is not None:
                    grads[j] = slots[k]
            if self.in_lo:
                dx = F.pad(dx, (self.in_lo, 0))
            return dx

    def _fields(self, outs: list[Tensor], y: Tensor) -> tuple[Tensor, Tensor]:
        """(f, g) from the nets' activated outputs: g reshaped (noise-major for general noise)."""
        g = outs[-1]
        if self.diagonal:
            g = g.view(y.shape[0], *self.shape_g)
        else:
            d, m = self.shape_g
            g = g.view(y.shape[0], m, d).transpose(1, 2)
        if self.n == 1:  # a CDE field: no drift
            if self.zero is None:
                self.zero = y.new_zeros(())
            return self.zero, g
        return outs[0], g

    # products with g through its contiguous noise-major layout gt = g^T: (batch, m, d)
    def _prod_small(self, gt: Tensor, dw: Tensor) -> Tensor:
        out = gt[:, 0] * dw[:, 0:1]
        for j in range(1, gt.shape[1]):
            out = torch.addcmul(out, gt[:, j], dw[:, j : j + 1])
        return out

    def prod(self, g: Tensor, dw: Tensor) -> Tensor:
        if self.diagonal:
            return g * dw
        if self.small:
            return self._prod_small(g.transpose(1, 2), dw)
        return torch.bmm(dw.unsqueeze(1), g.transpose(1, 2)).squeeze(1)

    def prod_pair(self, g: Tensor, dw_a: Tensor, dw_b: Tensor) -> tuple[Tensor, Tensor]:
        if self.diagonal:
            return g * dw_a, g * dw_b
        if self.small:
            gt = g.transpose(1, 2)
            return self._prod_small(gt, dw_a), self._prod_small(gt, dw_b)
        r = torch.bmm(torch.stack([dw_a, dw_b], dim=1), g.transpose(1, 2))
        # g dw_b is carried to the next step: contiguous, like the first step's ``prod`` (a
        # strided carry would make the compiled steps compile a second variant)
        return r[:, 0], r[:, 1].contiguous()

    def outer_pair(self, u: Tensor, dw_a: Tensor, v: Tensor, dw_b: Tensor) -> Tensor:
        if self.diagonal:
            return u * dw_a + v * dw_b
        if self.small:
            b, (d, m) = u.shape[0], self.shape_g
            out = u.unsqueeze(1).expand(b, m, d) * dw_a.unsqueeze(-1)
            out = torch.addcmul(out, v.unsqueeze(1).expand(b, m, d), dw_b.unsqueeze(-1))
            return out.transpose(1, 2)
        gt = torch.bmm(torch.stack([dw_a, dw_b], dim=2), torch.stack([u, v], dim=1))
        return gt.transpose(1, 2)

    def prod_adjoint(self, a: Tensor, dw: Tensor) -> Tensor:
        if self.diagonal:
            return a * dw
        return (dw.unsqueeze(2) * a.unsqueeze(1)).transpose(1, 2)

    def prod_adjoint_dw(self, a: Tensor, g: Tensor) -> Tensor:
        if self.diagonal:
            return a * g
        return torch.bmm(g.transpose(1, 2), a.unsqueeze(2)).squeeze(2)
