"""SDE-GAN vector fields on the solver core's fused fast path, tuned for small noise / channels.

:class:`GANDriftDiffusion` and :class:`GANCDEFunc` are :class:`MLPDriftDiffusion` and
:class:`CDEFunc` with the same parameters (state dicts are interchangeable) whose evaluator, on
top of the core's fusion (one input matmul, time as a rank-1 bias, folded LipSwish), changes two
things that dominate the SDE-GAN step at its sizes (noise 3, channels 2, batch 1024-2048):

* tanh outputs are computed as 2 sigmoid(2u) - 1, with the factor 2 folded into the output
  layer: ``torch.tanh`` is ~5x slower than ``torch.sigmoid`` on this CPU build;
* the matrix-valued output g (batch, d, m) is laid out noise-major in memory (a transposed
  view of a contiguous (batch, m, d) tensor), so g dW = sum_j g[:, :, j] dW_j and its adjoints
  are a handful of contiguous elementwise operations instead of batched matmuls of 16 x 3
  matrices (``torch.bmm`` on such tiny matrices runs at a few percent of the CPU's peak).

Values and gradients are those of the parent modules up to float rounding (tested).
"""

from __future__ import annotations

import torch
from torch import Tensor

from neuralsde_fin._solvers import CDEFunc, MLPDriftDiffusion
from neuralsde_fin._solvers._nets import FINAL_GRADS, _FusedField, _FusedMLPs

__all__ = ["GANCDEFunc", "GANDriftDiffusion"]


def _tanh_from_sigmoid(u2: Tensor) -> Tensor:
    """tanh(u) given u2 = 2u: 2 sigmoid(2u) - 1."""
    return torch.sigmoid(u2).mul(2.0).sub(1.0)


def _fold(module, g_index: int) -> list[Tensor]:
    """The core's folded tensors, with tanh outputs doubled and g's output columns noise-major."""
    w = module.net.folded()
    n = len(module.net.outs)
    d, m = module._g_shape
    for i in range(n):
        wi, bi = w[5 + i], w[5 + n + i]
        if i == g_index:  # columns k = r * m + j  ->  j * d + r
            wi = wi.view(wi.shape[0], d, m).transpose(1, 2).reshape(wi.shape[0], d * m)
            bi = bi.view(d, m).t().reshape(d * m)
        if module._finals[i] is torch.tanh:
            wi, bi = 2.0 * wi, 2.0 * bi
        w[5 + i], w[5 + n + i] = wi, bi
    return w


# its derivative for the hand-written VJP of the fused fields: d(2 sigmoid(u) - 1)/du = (1 - y^2)/2
FINAL_GRADS[_tanh_from_sigmoid] = lambda u, y, a: a * (0.5 - 0.5 * y * y)


class _GANField(_FusedField):
    """Evaluator: fused MLPs, sigmoid-based tanh, noise-major g; small-m products."""

    def __init__(self, module, tensors: list[Tensor]) -> None:
        super().__init__(module, tensors)
        self.d, self.m = module._g_shape
        self.finals = tuple(_tanh_from_sigmoid if fn is torch.tanh else fn for fn in module._finals)

    def for_backward(self) -> tuple[_GANField, list[Tensor]]:
        leaves = [t.detach().requires_grad_(t.requires_grad) for t in self.tensors]
        return _GANField(self.module, leaves), [t for t in leaves if t.requires_grad]

    def f_and_g(self, t: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        outs = _FusedMLPs.evaluate(self.tensors, t, y, self.n, self.width)
        outs = [o if fn is None else fn(o) for o, fn in zip(outs, self.finals)]
        g = outs[-1].view(y.shape[0], self.m, self.d).transpose(1, 2)
        if self.n == 1:
            if self.zero is None:
                self.zero = y.new_zeros(())
            return self.zero, g
        return outs[0], g

    # g has shape (batch, d, m), stored as the contiguous (batch, m, d) tensor g.transpose(1, 2)

    def prod(self, g: Tensor, dw: Tensor) -> Tensor:
        gs = g.transpose(1, 2)
        out = gs[:, 0] * dw[:, 0:1]
        for j in range(1, self.m):
            out = torch.addcmul(out, gs[:, j], dw[:, j : j + 1])
        return out

    def prod_pair(self, g: Tensor, dw_a: Tensor, dw_b: Tensor) -> tuple[Tensor, Tensor]:
        return self.prod(g, dw_a), self.prod(g, dw_b)

    def prod_adjoint(self, a: Tensor, dw: Tensor) -> Tensor:
        b = a.shape[0]
        out = a.unsqueeze(1).expand(b, self.m, self.d) * dw.unsqueeze(-1)
        return out.transpose(1, 2)

    def outer_pair(self, u: Tensor, dw_a: Tensor, v: Tensor, dw_b: Tensor) -> Tensor:
        b = u.shape[0]
        out = u.unsqueeze(1).expand(b, self.m, self.d) * dw_a.unsqueeze(-1)
        out = torch.addcmul(out, v.unsqueeze(1).expand(b, self.m, self.d), dw_b.unsqueeze(-1))
        return out.transpose(1, 2)

    def prod_adjoint_dw(self, a: Tensor, g: Tensor) -> Tensor:
        return torch.bmm(g.transpose(1, 2), a.unsqueeze(-1)).squeeze(-1)


class GANDriftDiffusion(MLPDriftDiffusion):
    """:class:`MLPDriftDiffusion` (general noise) with the SDE-GAN evaluator of this module."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.noise_type != "general":
            raise ValueError(f"noise_type must be 'general' here, got {self.noise_type!r}")

    def _nsf_vector_field(self) -> _GANField:
        return _GANField(self, _fold(self, 1))


class GANCDEFunc(CDEFunc):
    """:class:`CDEFunc` with the SDE-GAN evaluator of this module."""

    def _nsf_vector_field(self) -> _GANField:
        return _GANField(self, _fold(self, 0))
