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

from neuralsde_fin._solvers import CDEFunc, cdeint
from neuralsde_fin._solvers._nets import mlp

__all__ = [
    "GP_METHODS",
    "CDEDiscriminator",
    "clip_weights",
    "gradient_penalty",
    "interpolate_missing",
    "penalty_probes",
    "time_augment",
    "wasserstein_critic",
]

#: How the gradient penalty's gradient is computed: :func:`penalty_probes` or
#: :func:`gradient_penalty`.
GP_METHODS = ("finite_difference", "double_backward")


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
    every optimiser step) or a gradient penalty (an option): :func:`penalty_probes` (its
    gradient by a central difference of first-order adjoint gradients, the fast default) or
    :func:`gradient_penalty` (double backward through the solve).

    Args:
        data_size: channels of x (excluding time).
        hidden: CDE hidden state size.
        width: units per hidden layer of the MLPs (readin and vector field).
        depth: hidden layers of the MLPs.
        adjoint: solve with the reversible-Heun adjoint (else backpropagate through the solve,
            which the double backward of :func:`gradient_penalty` needs).

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
        self.func = CDEFunc(hidden, 1 + data_size, width, depth, final="tanh")
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


def gradient_penalty(
    discriminator: CDEDiscriminator, real: Tensor, fake: Tensor, *, alpha: Tensor | None = None
) -> Tensor:
    r"""WGAN-GP penalty at random interpolates of real and generated paths.

    .. math::
        \mathrm{GP} = \mathbb{E}\big[(\lVert \nabla_{\hat X} D(\hat X) \rVert_2 - 1)^2\big],
        \qquad \hat X = \alpha X_{real} + (1 - \alpha) X_{fake},\ \alpha \sim U(0, 1)

    Computed with the discriminator backpropagating through the solve (double backward), so it
    costs about twice a discriminator pass, recorded op by op (never compiled);
    :func:`penalty_probes` gives the same value and gradient (to O(h^2)) from first-order
    passes, faster per step (``benchmarks/README.md``).

    Args:
        discriminator: the discriminator.
        real: real paths (time-augmented).
        fake: generated paths (time-augmented).
        alpha: the interpolation weights, one per path in [0, 1] (None: ``torch.rand``, the
            global RNG; the calibration loss passes counter-based ones keyed by its seed).

    Returns:
        The scalar penalty (differentiable in the discriminator's parameters).

    Shape:
        real, fake: (batch, length, 1 + data_size); returns ().

    References:
        Gulrajani et al. (2017), Improved Training of Wasserstein GANs, arXiv:1704.00028.
    """
    xhat = _interpolates(real, fake, alpha).requires_grad_(True)
    with torch.enable_grad():
        score = discriminator(xhat, adjoint=False)
        (grad,) = torch.autograd.grad(score.sum(), xhat, create_graph=True)
    return (grad.reshape(grad.shape[0], -1).norm(dim=1) - 1).pow(2).mean()


def _interpolates(real: Tensor, fake: Tensor, alpha: Tensor | None) -> Tensor:
    """alpha X_real + (1 - alpha) X_fake per path, detached; alpha ~ U(0, 1) from the global RNG
    when not given."""
    if alpha is None:
        alpha = torch.rand(real.shape[0], dtype=real.dtype, device=real.device)
    alpha = alpha.to(real).view(-1, 1, 1)
    return alpha * real.detach() + (1 - alpha) * fake.detach()


def penalty_probes(
    discriminator: CDEDiscriminator, real: Tensor, fake: Tensor, *, step: float | None = None,
    alpha: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""The WGAN-GP penalty's value, and probe paths whose scores carry its gradient.

    With :math:`g_i = \nabla_X D(\hat X_i)` at the interpolates of :func:`gradient_penalty`,

    .. math::
        \mathrm{GP} = \frac1B \sum_i (\lVert g_i \rVert - 1)^2, \qquad
        \nabla_\phi \mathrm{GP} = \frac1B \sum_i \nabla_\phi \langle g_i, w_i \rangle,
        \quad w_i = 2 (\lVert g_i \rVert - 1) \frac{g_i}{\lVert g_i \rVert}

    (``w`` held fixed), and :math:`\langle g_i, w_i \rangle = \lVert w_i \rVert \,
    \partial_h D(\hat X_i + h u_i)|_0` with :math:`u_i = w_i / \lVert w_i \rVert`. A central
    difference of that directional derivative gives

    .. math::
        S = \sum_j c_j D(P_j), \quad P = [\hat X + h u;\ \hat X - h u], \quad
        c = \frac{[\lVert w \rVert;\ -\lVert w \rVert]}{2 h B}, \qquad
        \nabla_\phi S = \nabla_\phi \mathrm{GP} + O(h^2),

    a finite-difference Hessian-vector product. So ``value + S - S.detach()`` has the penalty's
    value and (to O(h^2)) its gradient, from first-order passes only: one adjoint pass for g here,
    and the probes' scores, which the SDE-GAN critic computes in the same batched solve as its real
    and generated paths. Unlike the double backward of :func:`gradient_penalty`, which autograd must
    record step by step through the solve, both passes run on the reversible-Heun adjoint (and its
    compiled steps). The default step h = eps^(1/3) of the dtype (4.9e-3 in float32, 6.1e-6 in
    float64; the data channels are normalised to unit scale) balances truncation against rounding:
    measured relative error of the gradient about 1e-4 in float32 against the exact double backward
    (tested). Score the probes in a batch whose first path is unperturbed (as
    :func:`wasserstein_critic` does): ``cdeint`` reads the solve's times from path 0's time channel.

    Args:
        discriminator: the discriminator (its ``adjoint`` setting is used for g).
        real: real paths (time-augmented).
        fake: generated paths (time-augmented).
        step: difference step h (None: eps^(1/3) of the dtype).
        alpha: interpolation weights, as for :func:`gradient_penalty`.

    Returns:
        ``(value, probes, weights)``: the penalty (detached), the 2B probe paths, and their
        weights c.

    Shape:
        real, fake: (B, length, 1 + data_size); returns (), (2B, length, 1 + data_size), (2B,).

    References:
        Gulrajani et al. (2017), Improved Training of Wasserstein GANs, arXiv:1704.00028.
        Pearlmutter (1994), Fast Exact Multiplication by the Hessian, Neural Computation 6(1)
        (Hessian-vector products; the finite-difference form and its O(h^2) error).
    """
    xhat = _interpolates(real, fake, alpha).requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(discriminator(xhat).sum(), xhat)
    b, tiny = g.shape[0], torch.finfo(g.dtype).tiny
    norm = g.reshape(b, -1).norm(dim=1)
    value = (norm - 1).pow(2).mean()
    w = (2 * (norm - 1) / norm.clamp_min(tiny)).view(b, 1, 1) * g
    w_norm = w.reshape(b, -1).norm(dim=1)
    u = w / w_norm.clamp_min(tiny).view(b, 1, 1)
    h = torch.finfo(g.dtype).eps ** (1 / 3) if step is None else float(step)
    x = xhat.detach()
    probes = torch.cat([x + h * u, x - h * u])
    weights = torch.cat([w_norm, -w_norm]) / (2 * h * b)
    return value.detach(), probes, weights


def wasserstein_critic(
    discriminator: CDEDiscriminator,
    fake: Tensor,
    real: Tensor,
    *,
    penalty: bool = False,
    gp_method: str = "finite_difference",
    alpha: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    r"""The critic's Wasserstein term and, optionally, its gradient penalty, in one batched solve.

    .. math::
        L = \tfrac1B \textstyle\sum_i D(X^{fake}_i) - \tfrac1B \sum_i D(X^{real}_i)

    Fake and real paths (and, with ``gp_method="finite_difference"``, the penalty's probe
    paths of :func:`penalty_probes`) are scored in one ``cdeint`` solve.

    Args:
        discriminator: the discriminator.
        fake: generated paths (time-augmented); gradients reach them unless detached.
        real: real paths (time-augmented).
        penalty: also return the gradient penalty (the WGAN-GP term at random interpolates).
        gp_method: "finite_difference" (:func:`penalty_probes`) or "double_backward"
            (:func:`gradient_penalty`).
        alpha: the penalty's interpolation weights (see :func:`gradient_penalty`).

    Returns:
        ``(L, GP)``, with GP None unless ``penalty``; both differentiable in the
        discriminator's parameters (GP's gradient to O(h^2) with "finite_difference").

    Shape:
        fake, real: (B, length, 1 + data_size); returns (), ().
    """
    if gp_method not in GP_METHODS:
        raise ValueError(f"gp_method must be one of {GP_METHODS}, got {gp_method!r}")
    b = fake.shape[0]
    paths, gp = [fake, real], None
    if penalty and gp_method == "finite_difference":
        value, probes, weights = penalty_probes(discriminator, real, fake, alpha=alpha)
        paths.append(probes)
    scores = discriminator(torch.cat(paths, dim=0))
    loss = scores[:b].mean() - scores[b : 2 * b].mean()
    if penalty and gp_method == "finite_difference":
        s = (weights * scores[2 * b :]).sum()
        gp = value + (s - s.detach())
    elif penalty:
        gp = gradient_penalty(discriminator, real, fake, alpha=alpha)
    return loss, gp
