"""Fused neural vector fields that the solvers recognise and evaluate on a fast path.

Both modules follow the protocols of torchsde / torchcde (so they also run there) and expose
``_nsf_vector_field()``, which ``sdeint`` / ``cdeint`` call once per solve to get an evaluator
that works on pre-folded weights:

* drift and diffusion share one input matmul: [W_f; W_g] z, one ``addmm`` for both nets;
* time enters as a rank-1 bias, b + t w_t, instead of concatenating t to the input;
* every layer is one ``addmm`` (bias fused), hidden layers of both nets are one ``baddbmm``;
* LipSwish, x sigmoid(x) * 0.909, is computed as ``silu(x)`` with the 0.909 folded into the
  next layer's weights.

* the adjoint's per-step VJP is written out by hand (``_FusedMLPs.backward``): no autograd graph
  is recorded and no engine runs; weight cotangents are accumulated by the GEMMs themselves.

The evaluator's tensors are computed from the parameters once per solve (with autograd, so
backpropagation and the adjoint reach the module's parameters).

References:
    Kidger, Foster, Li, Lyons (2021), Neural SDEs as Infinite-Dimensional GANs,
    arXiv:2102.03657 (architecture: MLPs with LipSwish, time input, tanh outputs).
    Chen, Behrmann, Duvenaud, Jacobsen (2019), Residual Flows, arXiv:1906.02735 (LipSwish).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuralsde_fin._solvers._base import VectorField

#: LipSwish(x) = LIPSWISH_SCALE * x * sigmoid(x) is 1-Lipschitz.
LIPSWISH_SCALE = 0.909

_FINALS = {None: None, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "softplus": F.softplus}

#: Cotangent of an output activation's input: ``grad(u, y, a)`` for y = fn(u) and the cotangent
#: a of y. The hand-written VJP of the fused fields covers these activations; a field with any
#: other output activation takes the generic autograd VJP.
FINAL_GRADS = {
    None: lambda u, y, a: a,
    torch.tanh: lambda u, y, a: a * (1.0 - y * y),
    torch.sigmoid: lambda u, y, a: a * (y * (1.0 - y)),
    F.softplus: lambda u, y, a: a * torch.sigmoid(u),
}


class LipSwish(nn.Module):
    """LipSwish activation, 0.909 x sigmoid(x): a 1-Lipschitz smooth ReLU.

    Shape:
        any; elementwise.
    """

    def forward(self, x: Tensor) -> Tensor:
        return LIPSWISH_SCALE * F.silu(x)


def _uniform(shape: tuple[int, ...], fan_in: int) -> Tensor:
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(shape).uniform_(-bound, bound)


class _FusedMLPs(nn.Module):
    """``n_nets`` MLPs of equal width and depth on the same input, evaluated together.

    Input layer of all nets: one matrix (n_nets * width, in_features) plus a time column; hidden
    layers: stacked (n_layers, n_nets, width, width); output layers: one per net.
    """

    def __init__(self, in_features: int, outs: list[int], width: int, depth: int) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1 hidden layer, got {depth}")
        k = len(outs)
        fan = in_features + 1
        self.width, self.depth, self.outs = width, depth, list(outs)
        self.in_weight = nn.Parameter(_uniform((k * width, in_features), fan))
        self.in_time = nn.Parameter(_uniform((k * width,), fan))
        self.in_bias = nn.Parameter(_uniform((k * width,), fan))
        self.hidden_weight = nn.Parameter(_uniform((depth - 1, k, width, width), width))
        self.hidden_bias = nn.Parameter(_uniform((depth - 1, k, 1, width), width))
        self.out_weight = nn.ParameterList(nn.Parameter(_uniform((o, width), width)) for o in outs)
        self.out_bias = nn.ParameterList(nn.Parameter(_uniform((o,), width)) for o in outs)

    def folded(self, noise_major: int = 0) -> list[Tensor]:
        """The evaluator's tensors: transposed weights with the LipSwish scale folded in.

        With ``noise_major = m > 0`` the last net's outputs, a (d, m) matrix in row-major order,
        are permuted to (m, d) order, so that g dW is a batched (1 x m) @ (m x d) product.
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
        """Outputs of all nets at (t, x) from the folded tensors ``w``.

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
        hs = _FusedMLPs._last_hidden(hacts, n, width)
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
        hs = _FusedMLPs._last_hidden(hacts, n, width)
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


class _FusedField(VectorField):
    """Evaluator for :class:`MLPDriftDiffusion` / :class:`CDEFunc` on folded tensors.

    For general noise g is computed noise-major, a contiguous (batch, m, d) tensor returned as
    its (batch, d, m) transposed view, and every product with g is a batched matmul against
    that contiguous layout (3x faster than ``bmm`` on (d, m) @ (m, 1) blocks).
    """

    def __init__(self, module: nn.Module, tensors: list[Tensor] | None = None) -> None:
        self.module = module
        self.diagonal = module.noise_type == "diagonal"
        self.shape_g = module._g_shape
        if tensors is None:
            tensors = module.net.folded(0 if self.diagonal else self.shape_g[1])
        self.tensors = tensors
        self.finals = module._finals
        self.n = len(module.net.outs)
        self.width = module.net.width
        self.zero = None
        self.scratch: dict[str, Tensor] | None = None
        self._param_index: list[int | None] | None = None

    def params(self) -> list[Tensor]:
        return [t for t in self.tensors if t.requires_grad]

    def for_backward(self) -> tuple[_FusedField, list[Tensor]]:
        leaves = [t.detach().requires_grad_(t.requires_grad) for t in self.tensors]
        return _FusedField(self.module, leaves), [t for t in leaves if t.requires_grad]

    def f_and_g(self, t: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._f_and_g(t, y, None)

    def f_and_g_scratch(self, t: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``f_and_g`` for a caller that uses g at once (without autograd): g lives in a buffer
        that the next call overwrites; f is a fresh tensor."""
        if self.scratch is None:
            self.scratch = {}
        return self._f_and_g(t, y, self.scratch)

    def _f_and_g(self, t: Tensor, y: Tensor, scratch) -> tuple[Tensor, Tensor]:
        outs = _FusedMLPs.evaluate(self.tensors, t, y, self.n, self.width, scratch)
        return self._fields([o if fn is None else fn(o) for o, fn in zip(outs, self.finals)], y)

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
            outs, cache = _FusedMLPs.record(self.tensors, t, z, self.n, self.width)
            ys = [o if fn is None else fn(o) for o, fn in zip(outs, self.finals)]
            f, g = self._fields(ys, z)
        return f, g, (cache, outs, ys)

    def vjp(self, rec: Any, a_f: Tensor, a_g: Tensor, grads: list[Tensor | None]) -> Tensor | None:
        """Hand-written VJP (see :meth:`_FusedMLPs.backward`): no autograd graph or engine.

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
            dx = _FusedMLPs.backward(self.tensors, cache, d_outs, self.n, self.width, slots)
            for k, j in enumerate(self._param_index):  # the updated accumulators
                if j is not None:
                    grads[j] = slots[k]
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
    def prod(self, g: Tensor, dw: Tensor) -> Tensor:
        if self.diagonal:
            return g * dw
        return torch.bmm(dw.unsqueeze(1), g.transpose(1, 2)).squeeze(1)

    def prod_pair(self, g: Tensor, dw_a: Tensor, dw_b: Tensor) -> tuple[Tensor, Tensor]:
        if self.diagonal:
            return g * dw_a, g * dw_b
        r = torch.bmm(torch.stack([dw_a, dw_b], dim=1), g.transpose(1, 2))
        # g dw_b is carried to the next step: contiguous, like the first step's ``prod`` (a
        # strided carry would make the compiled steps compile a second variant)
        return r[:, 0], r[:, 1].contiguous()

    def outer_pair(self, u: Tensor, dw_a: Tensor, v: Tensor, dw_b: Tensor) -> Tensor:
        if self.diagonal:
            return u * dw_a + v * dw_b
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


class MLPDriftDiffusion(nn.Module):
    r"""Neural SDE vector fields: drift and diffusion MLPs with time input, evaluated fused.

    .. math::
        dy_t = f_\theta(t, y_t)\,dt + g_\theta(t, y_t) \circ dW_t

    with f and g MLPs of ``depth`` hidden layers of ``width`` units and LipSwish activations,
    whose input is (t, y). Follows torchsde's protocol (``f``, ``g``, ``f_and_g``, ``sde_type``,
    ``noise_type``) so it runs unchanged in torchsde; ``nsf.sdeint`` evaluates it on a fused fast
    path (one input matmul for both nets, time as a rank-1 bias, see the module docstring).

    Args:
        state: state size d.
        noise: noise size m (ignored for diagonal noise, where m = d).
        width: hidden units per layer.
        depth: number of hidden layers.
        noise_type: "general" (g is (batch, d, m)) or "diagonal" (g is (batch, d)).
        sde_type: "stratonovich" (reversible Heun, Heun) or "ito" (Euler).
        drift_final: None or "tanh" / "sigmoid" / "softplus", applied to the drift output.
        diffusion_final: likewise for the diffusion output (Kidger et al. use tanh on both).

    Shape:
        t: () ; y: (batch, d); f: (batch, d); g: (batch, d, m) or (batch, d).

    References:
        Kidger, Foster, Li, Lyons (2021), Neural SDEs as Infinite-Dimensional GANs,
        arXiv:2102.03657.
    """

    def __init__(
        self,
        state: int,
        noise: int,
        width: int = 64,
        depth: int = 2,
        *,
        noise_type: str = "general",
        sde_type: str = "stratonovich",
        drift_final: str | None = None,
        diffusion_final: str | None = None,
    ) -> None:
        super().__init__()
        if noise_type not in ("general", "diagonal"):
            raise ValueError(f"noise_type must be 'general' or 'diagonal', got {noise_type!r}")
        if sde_type not in ("ito", "stratonovich"):
            raise ValueError(f"sde_type must be 'ito' or 'stratonovich', got {sde_type!r}")
        for name, fin in (("drift_final", drift_final), ("diffusion_final", diffusion_final)):
            if fin not in _FINALS:
                raise ValueError(f"{name} must be one of {sorted(map(str, _FINALS))}, got {fin!r}")
        self.noise_type, self.sde_type = noise_type, sde_type
        self.state = state
        self.noise = state if noise_type == "diagonal" else noise
        self._g_shape = (state,) if noise_type == "diagonal" else (state, self.noise)
        self._finals = (_FINALS[drift_final], _FINALS[diffusion_final])
        self.net = _FusedMLPs(
            state,
            [state, state * self.noise if self.noise_type != "diagonal" else state],
            width,
            depth,
        )

    def _nsf_vector_field(self) -> _FusedField:
        return _FusedField(self)

    def unfused(self) -> PlainSDE:
        """The same SDE written the conventional way (separate nets, t concatenated)."""
        return PlainSDE(self)

    def f_and_g(self, t: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Drift and diffusion at (t, y) in one fused evaluation."""
        t = torch.as_tensor(t, dtype=y.dtype, device=y.device)
        f, g = self._nsf_vector_field().f_and_g(t, y)
        return f, g.contiguous()

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        """Drift f(t, y), shape (batch, d)."""
        return self.f_and_g(t, y)[0]

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        """Diffusion g(t, y), shape (batch, d, m) (general) or (batch, d) (diagonal)."""
        return self.f_and_g(t, y)[1]


class CDEFunc(nn.Module):
    r"""Neural CDE vector field f_theta(t, h), an MLP with time input, for ``nsf.cdeint``.

    .. math::
        dh_t = f_\theta(t, h_t)\,dX_t, \qquad f_\theta(t, h) \in \mathbb{R}^{hidden \times channels}

    LipSwish hidden layers and a tanh output (as the SDE-GAN discriminator of Kidger et al.);
    time enters as a rank-1 bias. Callable as ``func(t, h)`` like a torchcde vector field, and
    evaluated on the fused fast path by ``nsf.cdeint``.

    Args:
        hidden: hidden state size.
        channels: channels of the control path X.
        width: hidden units per layer.
        depth: number of hidden layers.
        final: output activation: "tanh" (default), None, "sigmoid" or "softplus".

    Shape:
        t: (); h: (batch, hidden); returns (batch, hidden, channels).

    References:
        Kidger, Foster, Li, Lyons (2021), Neural SDEs as Infinite-Dimensional GANs,
        arXiv:2102.03657, appendix (discriminator).
    """

    noise_type = "general"
    sde_type = "stratonovich"

    def __init__(
        self,
        hidden: int,
        channels: int,
        width: int = 64,
        depth: int = 2,
        *,
        final: str | None = "tanh",
    ) -> None:
        super().__init__()
        if final not in _FINALS:
            raise ValueError(f"final must be one of {sorted(map(str, _FINALS))}, got {final!r}")
        self.hidden, self.channels = hidden, channels
        self._g_shape = (hidden, channels)
        self._finals = (_FINALS[final],)
        self.net = _FusedMLPs(hidden, [hidden * channels], width, depth)

    def _nsf_vector_field(self) -> _FusedField:
        return _FusedField(self)

    def unfused(self) -> PlainCDEFunc:
        """The same vector field written the conventional way (t concatenated to h)."""
        return PlainCDEFunc(self)

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=h.dtype, device=h.device)
        return self._nsf_vector_field().f_and_g(t, h)[1].contiguous()


def _plain_mlps(net: _FusedMLPs, finals: tuple) -> list[nn.Sequential]:
    """Ordinary nn.Sequential MLPs on cat([t, x]) with the same weights as ``net``."""
    seqs = []
    w = net.width
    with torch.no_grad():
        for i, out in enumerate(net.outs):
            layers: list[nn.Module] = []
            lin = nn.Linear(net.in_weight.shape[1] + 1, w)
            lin.weight.copy_(
                torch.cat(
                    [net.in_time[i * w : (i + 1) * w, None], net.in_weight[i * w : (i + 1) * w]],
                    dim=1,
                )
            )
            lin.bias.copy_(net.in_bias[i * w : (i + 1) * w])
            layers += [lin, LipSwish()]
            for j in range(net.depth - 1):
                lin = nn.Linear(w, w)
                lin.weight.copy_(net.hidden_weight[j, i])
                lin.bias.copy_(net.hidden_bias[j, i, 0])
                layers += [lin, LipSwish()]
            lin = nn.Linear(w, out)
            lin.weight.copy_(net.out_weight[i])
            lin.bias.copy_(net.out_bias[i])
            layers.append(lin)
            if finals[i] is not None:
                layers.append(_Final(finals[i]))
            seqs.append(nn.Sequential(*layers))
    return [s.to(net.in_weight.dtype) for s in seqs]


class _Final(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


class PlainSDE(nn.Module):
    """A torchsde-style SDE with separate drift / diffusion ``nn.Sequential`` nets on cat([t, y]).

    Built by :meth:`MLPDriftDiffusion.unfused` with the same weights: the conventional way to
    write the model, used as the peer in tests and benchmarks.
    """

    def __init__(self, fused: MLPDriftDiffusion) -> None:
        super().__init__()
        self.noise_type, self.sde_type = fused.noise_type, fused.sde_type
        self._g_shape = fused._g_shape
        self.drift, self.diffusion = _plain_mlps(fused.net, fused._finals)

    def _in(self, t: Tensor, y: Tensor) -> Tensor:
        return torch.cat([t.expand(y.shape[0], 1), y], dim=1)

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        return self.drift(self._in(t, y))

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        return self.diffusion(self._in(t, y)).view(y.shape[0], *self._g_shape)


class PlainCDEFunc(nn.Module):
    """A torchcde-style vector field (nn.Sequential on cat([t, h])) with a CDEFunc's weights."""

    def __init__(self, fused: CDEFunc) -> None:
        super().__init__()
        self._g_shape = fused._g_shape
        (self.net,) = _plain_mlps(fused.net, fused._finals)

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=h.dtype, device=h.device)
        x = torch.cat([t.expand(h.shape[0], 1), h], dim=1)
        return self.net(x).view(h.shape[0], *self._g_shape)
