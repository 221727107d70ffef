"""Neural CDE discriminator of the SDE-GAN, its Lipschitz controls, and missing-data filling.

The discriminator reads a time-augmented path X = (t, x) and returns one score per path:

    h_0 = xi(X_0),    dh_t = f(t, h_t) dX_t,    score = l(h_T)

solved by ``nsf.cdeint`` (reversible Heun with dX in place of dW, exact O(1)-memory adjoint) on
the fused :class:`~neuralsde_fin._solvers.CDEFunc` fast path, so the gradient of the score
reaches X (the generator's output) as well as the parameters.

References:
    Kidger, Foster, Li, Lyons (2021), Neural SDEs as Infinite-Dimensional GANs, arXiv:2102.03657.
    Kidger, Foster, Li, Lyons (2021), Efficient and Accurate Gradients for Neural SDEs,
    arXiv:2105.13493 (reversible Heun discriminator, weight clipping, LipSwish).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neuralsde_fin._calibrate._ganfields import GANCDEFunc
from neuralsde_fin._solvers import CDEFunc, LipSwish, cdeint

__all__ = [
    "CDEDiscriminator",
    "clip_weights",
    "gradient_penalty",
    "interpolate_missing",
    "mlp",
    "time_augment",
]


def mlp(in_features: int, out_features: int, width: int, depth: int) -> nn.Sequential:
    """An MLP with ``depth`` hidden layers of ``width`` LipSwish units (no output activation).

    Shape:
        (..., in_features) -> (..., out_features).
    """
    layers: list[nn.Module] = [nn.Linear(in_features, width), LipSwish()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), LipSwish()]
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def time_augment(ts: Tensor, x: Tensor) -> Tensor:
    """Prepend time as channel 0: X = (t, x).

    Shape:
        ts: (length,); x: (batch, length, channels); returns (batch, length, 1 + channels).
    """
    t = ts.to(dtype=x.dtype, device=x.device).view(1, -1, 1).expand(x.shape[0], -1, 1)
    return torch.cat([t, x], dim=2)


def interpolate_missing(x: Tensor, ts: Tensor | None = None) -> Tensor:
    r"""Fill NaN observations by linear interpolation in time, channel by channel.

    For an observation missing at t between observed neighbours (t_a, x_a) and (t_b, x_b):

    .. math::
        x_t = x_a + (x_b - x_a) \frac{t - t_a}{t_b - t_a};

    leading NaNs take the first observed value and trailing NaNs the last one. This is the
    filling of ``torchcde.linear_interpolation_coeffs`` (the paper's irregular-data example): the
    CDE is then driven by the piecewise-linear interpolant of the observed points.

    Args:
        x: paths with NaN where unobserved.
        ts: observation times (default 0, 1, ..., length - 1).

    Returns:
        ``x`` with every NaN filled (a new tensor; ``x`` itself if nothing is missing).

    Raises:
        ValueError: if some path has a channel with no observation at all.

    Shape:
        x: (batch, length, channels); ts: (length,); returns (batch, length, channels).
    """
    nan = torch.isnan(x)
    if not bool(nan.any()):
        return x
    if bool(nan.all(dim=1).any()):
        b, c = nan.all(dim=1).nonzero()[0].tolist()
        raise ValueError(f"x has no observation at all in path {b}, channel {c}")
    length = x.shape[1]
    if ts is None:
        ts = torch.arange(length, dtype=x.dtype, device=x.device)
    ts = ts.to(dtype=x.dtype, device=x.device)
    idx = torch.arange(length, device=x.device).view(1, -1, 1).expand_as(x)
    # index of the previous / next observed point (or -1 / length if there is none)
    prev = torch.where(nan, torch.full_like(idx, -1), idx).cummax(dim=1).values
    nxt = torch.where(nan, torch.full_like(idx, length), idx)
    nxt = nxt.flip(1).cummin(dim=1).values.flip(1)
    prev_c = prev.clamp(min=0)
    nxt_c = nxt.clamp(max=length - 1)
    # leading gaps: take the next observation; trailing gaps: the previous one
    prev_c = torch.where(prev < 0, nxt_c, prev_c)
    nxt_c = torch.where(nxt >= length, prev_c, nxt_c)
    xa = torch.gather(x, 1, prev_c)
    xb = torch.gather(x, 1, nxt_c)
    ta, tb, t = ts[prev_c], ts[nxt_c], ts[idx]
    same = prev_c == nxt_c
    w = torch.where(same, torch.zeros_like(t), (t - ta) / torch.where(same, 1.0, tb - ta))
    filled = xa + (xb - xa) * w
    return torch.where(nan, filled, x)


class CDEDiscriminator(nn.Module):
    r"""Neural CDE discriminator on the time-augmented path X = (t, x), one score per path.

    .. math::
        h_0 = \xi_\phi(X_0), \qquad dh_t = f_\phi(t, h_t)\,dX_t, \qquad
        D_\phi(X) = \ell_\phi(h_T)

    ``xi`` is an MLP with LipSwish activations, ``f`` a fused :class:`CDEFunc` (LipSwish hidden
    layers, tanh output, time as an input), ``l`` a linear readout of the final hidden state. The
    CDE is solved by ``nsf.cdeint`` with reversible Heun along the piecewise-linear interpolant of
    X, one step per observation interval; with ``adjoint=True`` (default) the backward pass is the
    exact O(1)-memory reversible-Heun adjoint, and gradients reach X.

    Lipschitz control: :func:`clip_weights` (weight clipping, the paper's default, applied after
    every optimiser step) or :func:`gradient_penalty` (an option).

    Args:
        data_size: channels of x (excluding time).
        hidden: CDE hidden state size.
        width: units per hidden layer of the MLPs (readin and vector field).
        depth: hidden layers of the MLPs.
        adjoint: solve with the reversible-Heun adjoint (else backpropagate through the solve,
            which is needed for double backward, i.e. the gradient penalty).

    Shape:
        X: (batch, length, 1 + data_size) with time in channel 0; returns (batch,).

    References:
        Kidger, Foster, Li, Lyons (2021), Neural SDEs as Infinite-Dimensional GANs,
        arXiv:2102.03657, section 3.
    """

    def __init__(
        self,
        data_size: int,
        hidden: int = 16,
        width: int = 16,
        depth: int = 1,
        *,
        adjoint: bool = True,
    ) -> None:
        super().__init__()
        for name, v in (("data_size", data_size), ("hidden", hidden), ("width", width)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v!r}")
        if int(depth) < 1:
            raise ValueError(f"depth must be >= 1, got {depth!r}")
        self.data_size, self.hidden = data_size, hidden
        self.adjoint = adjoint
        self.readin = mlp(1 + data_size, hidden, width, depth)
        self.func = GANCDEFunc(hidden, 1 + data_size, width, depth, final="tanh")
        self.readout = nn.Linear(hidden, 1)

    def forward(self, X: Tensor, *, adjoint: bool | None = None) -> Tensor:
        """Score of every path of X (time in channel 0, no NaN: see :func:`interpolate_missing`)."""
        h0 = self.readin(X[:, 0])
        adj = self.adjoint if adjoint is None else adjoint
        h1 = cdeint(self.func, h0, X, ts=X[0, :, 0].detach(), adjoint=adj, output="final")
        return self.readout(h1).squeeze(-1)


@torch.no_grad()
def clip_weights(module: nn.Module) -> None:
    """Clip every weight matrix of ``module`` to [-1/out, 1/out] (out = its output features).

    Applies to ``nn.Linear`` layers and to the fused layers of :class:`CDEFunc` (input layer incl.
    its time column, hidden layers, output layer), exactly as clipping the equivalent
    ``nn.Linear`` layers of the torchsde example would. Biases are not clipped.

    References:
        Kidger, Foster, Li, Lyons (2021), Efficient and Accurate Gradients for Neural SDEs,
        arXiv:2105.13493, section 4 (careful clipping plus LipSwish).
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            lim = 1.0 / m.out_features
            m.weight.clamp_(-lim, lim)
        elif isinstance(m, CDEFunc):
            net = m.net
            lim = 1.0 / net.width
            net.in_weight.clamp_(-lim, lim)
            net.in_time.clamp_(-lim, lim)
            net.hidden_weight.clamp_(-lim, lim)
            for w in net.out_weight:
                w.clamp_(-1.0 / w.shape[0], 1.0 / w.shape[0])


def gradient_penalty(discriminator: CDEDiscriminator, real: Tensor, fake: Tensor) -> Tensor:
    r"""WGAN-GP penalty at random interpolates of real and generated paths.

    .. math::
        \mathrm{GP} = \mathbb{E}\big[(\lVert \nabla_{\hat X} D(\hat X) \rVert_2 - 1)^2\big],
        \qquad \hat X = \alpha X_{real} + (1 - \alpha) X_{fake},\ \alpha \sim U(0, 1)

    Computed with the discriminator backpropagating through the solve (double backward), so it
    costs about twice a discriminator pass.

    Args:
        discriminator: the discriminator.
        real: real paths (time-augmented).
        fake: generated paths (time-augmented).

    Returns:
        The scalar penalty (differentiable in the discriminator's parameters).

    Shape:
        real, fake: (batch, length, 1 + data_size); returns ().

    References:
        Gulrajani et al. (2017), Improved Training of Wasserstein GANs, arXiv:1704.00028.
    """
    alpha = torch.rand(real.shape[0], 1, 1, dtype=real.dtype, device=real.device)
    xhat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    with torch.enable_grad():
        score = discriminator(xhat, adjoint=False)
        (grad,) = torch.autograd.grad(score.sum(), xhat, create_graph=True)
    return (grad.reshape(grad.shape[0], -1).norm(dim=1) - 1).pow(2).mean()
