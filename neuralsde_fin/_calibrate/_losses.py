"""Calibration losses: a registry of path-law discrepancies ``loss(fake_paths, real_paths)``.

Every loss is an ``nn.Module`` registered with ``@register("name")``; ``LOSSES[name](**options)``
builds one. ``loss(fake_paths, real_paths)`` returns a scalar differentiable with respect to
``fake_paths`` (the generator's output); both inputs have shape (batch, length, channels).

The training loop (``_train.py``) knows nothing about a particular loss. A loss that trains
parameters of its own (the SDE-GAN's discriminator) sets ``adversarial = True`` and implements
the hook ``before_generator_step``, which the loop calls with detached fake paths before each
generator update; ``training_state`` / ``load_training_state`` let the loop checkpoint that
hook's optimiser so that resumed runs are exact.

Registered here:

- "sigw1": the SigW1 metric of Ni et al. 2021, L2 distance between expected truncated
  signatures, with a level scaling (see ``SigW1``).
- "sigkernel": the unbiased signature-kernel MMD^2 (equivalently the signature-kernel scoring
  rule up to a constant) of Issa et al. 2023, computed by pysiglib's signature-kernel PDE solver.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from neuralsde_fin._registry import registrar
from neuralsde_fin._signature import augment, signature, split_levels
from neuralsde_fin._signature._kernel import sig_kernel_gram
from neuralsde_fin._signature._kernel import static_kernel as make_static_kernel
from neuralsde_fin._validate import check_int

LOSSES: dict[str, type[Loss]] = {}


#: Class decorator adding a class to ``LOSSES`` under ``name`` (sets ``cls.name``).
register = registrar(LOSSES, "loss")


def get_loss(name: str, **options: Any) -> Loss:
    """Build the registered loss ``name`` with its options."""
    if name not in LOSSES:
        raise ValueError(f"method must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name](**options)


class Loss(nn.Module):
    """Base class of calibration losses: ``forward(fake_paths, real_paths) -> scalar``.

    Attributes:
        name: the registry name (set by ``register``).
        adversarial: True when the loss trains parameters of its own in
            ``before_generator_step`` (e.g. a GAN discriminator).
        seed: ``calibrate``'s seed (set by it): a loss's own random draws (initial weights,
            penalty interpolates) are keyed by it, never by torch's global RNG.
        step: the training step in progress (set by the training loop before each step).
    """

    name: str = ""
    adversarial: bool = False
    seed: int = 0
    step: int = 0

    def before_generator_step(self, fake_paths: torch.Tensor, real_paths: torch.Tensor) -> None:
        """Hook called by the training loop before each generator update (detached fakes).

        For exact resumes it must not draw from torch's global RNG; its own weights are built
        under ``calibrate``'s seed, and its optimiser state goes through ``training_state``.
        """

    def training_state(self) -> dict[str, Any]:
        """Extra state (e.g. an optimiser's) to checkpoint besides ``state_dict()``."""
        return {}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore what ``training_state`` returned."""

    def config(self) -> dict[str, Any]:
        """The options this loss was built with (plain JSON types)."""
        return dict(getattr(self, "_config", {}))


def _marginal_w2(fake: torch.Tensor, real: torch.Tensor, h: int) -> torch.Tensor:
    """Squared 2-Wasserstein distance of the pooled h-step returns of two batches, per channel,
    over the real returns' variance: mean over quantiles of (q_fake - q_real)^2 / var_real.

    Shape:
        fake, real: (batch, length, channels) with equal batches -> ().
    """
    rf = (fake[:, h:] - fake[:, :-h]).transpose(0, 2).reshape(fake.shape[2], -1)
    rr = (real[:, h:] - real[:, :-h]).transpose(0, 2).reshape(real.shape[2], -1).detach()
    qf, _ = torch.sort(rf, dim=1)
    qr, _ = torch.sort(rr, dim=1)
    if qr.shape[1] != qf.shape[1]:  # batches of different sizes: the real quantiles at the fake's
        pos = torch.linspace(0, qr.shape[1] - 1, qf.shape[1], dtype=qf.dtype, device=qf.device)
        lo = pos.floor().long()
        hi = (lo + 1).clamp(max=qr.shape[1] - 1)
        w = pos - lo
        qr = qr[:, lo] * (1 - w) + qr[:, hi] * w
    var = rr.var(dim=1, keepdim=True).clamp_min(torch.finfo(rr.dtype).tiny)
    return ((qf - qr).pow(2) / var).mean(1).sum()


def _check_pair(fake_paths: torch.Tensor, real_paths: torch.Tensor) -> None:
    if fake_paths.dim() != 3 or real_paths.dim() != 3:
        raise ValueError(
            "fake_paths and real_paths must have shape (batch, length, channels), got "
            f"{tuple(fake_paths.shape)} and {tuple(real_paths.shape)}"
        )
    if fake_paths.shape[1:] != real_paths.shape[1:]:
        raise ValueError(
            "fake_paths and real_paths must share (length, channels), got "
            f"{tuple(fake_paths.shape)} and {tuple(real_paths.shape)}"
        )


@register("sigw1")
class SigW1(Loss):
    """SigW1: L2 distance between the expected truncated signatures of model and data.

        L(P_fake, P_real) = || sum_k w_k (E S^{(k)}(X_fake) - E S^{(k)}(X_real)) ||_2

    with S^{(k)} level k of the signature of the time-augmented path with basepoint
    (optionally lead-lag), expectations replaced by batch means. Cost is linear in the batch.

    Level scaling (``level_scaling``): the level-k term of a path of size |X| is of order
    |X|^k / k!, so unweighted, high levels vanish (small paths) or explode (large paths).

    - ``"data"`` (default): w_k = 1 / sqrt(mean_i ||S^{(k)}(Y_i)||^2) over the real batch
      (detached): every level is measured relative to its typical size in the data, so each
      level contributes comparably whatever the scale of the paths.
    - ``"factorial"``: w_k = k!, undoing the 1/k! decay (right for paths of size about 1).
    - ``"none"``: w_k = 1, the plain metric of Ni et al.

    Args:
        depth: truncation depth m.
        lead_lag: lead-lag transform before the signature.
        time_aug: add time (uniform on [0, 1]) as a channel.
        basepoint: prepend the origin.
        level_scaling: "data" | "factorial" | "none".
        scale: the paths are multiplied by this before the signature.
        squared: return the squared distance instead of the distance.
        backend: signature backend ("signatory" | "pysiglib" | None for the default).
        qv: append each asset's realised quadratic variation, QV_t = sum_{s < t} (dx_s)^2
            (times ``qv_scale``), as a channel: its signature terms see the window's variance
            and where in the window it accumulates (volatility clustering).
        qv_scale: multiplier of the QV channel (normalised windows have QV about 1).
        scales: several path scalings s: the loss is the root of the sum over s of the squared
            distances of the signatures of s * paths (None: ``scale`` alone).
        marginals: horizons h (in steps) whose return distributions are matched directly,
            the tails included: the squared 2-Wasserstein distance of the pooled h-step
            returns x_{t+h} - x_t of the two batches (sorted samples), divided by the real
            returns' variance, is added to the squared signature distance.
        marginal_weight: weight of each marginal term.

    Shape:
        fake_paths, real_paths: (batch, length, channels) -> scalar.

    References:
        Ni, Szpruch, Wiese, Liao, Xiao 2021, "Sig-Wasserstein GANs for time series generation".
    """

    def __init__(
        self,
        depth: int = 4,
        *,
        lead_lag: bool = False,
        time_aug: bool = True,
        basepoint: bool = True,
        level_scaling: str = "data",
        scale: float = 1.0,
        squared: bool = False,
        backend: str | None = None,
        qv: bool = False,
        qv_scale: float = 1.0,
        scales: list[float] | None = None,
        marginals: list[int] | None = None,
        marginal_weight: float = 1.0,
    ) -> None:
        super().__init__()
        check_int("depth", depth)
        if level_scaling not in ("data", "factorial", "none"):
            raise ValueError(
                f"level_scaling must be 'data', 'factorial' or 'none', got {level_scaling!r}"
            )
        self.depth = depth
        self.lead_lag = lead_lag
        self.time_aug = time_aug
        self.basepoint = basepoint
        self.level_scaling = level_scaling
        self.scale = float(scale)
        self.squared = squared
        self.backend = backend
        self.qv, self.qv_scale = bool(qv), float(qv_scale)
        self.scales = [float(self.scale)] if scales is None else [float(s) for s in scales]
        if not self.scales or any(not s > 0 for s in self.scales):
            raise ValueError(f"scales must be positive numbers, got {scales!r}")
        self.marginals = [check_int("marginals", h) for h in (marginals or [])]
        self.marginal_weight = float(marginal_weight)
        self._config = dict(
            depth=depth, lead_lag=lead_lag, time_aug=time_aug, basepoint=basepoint,
            level_scaling=level_scaling, scale=float(scale), squared=squared, backend=backend,
            qv=self.qv, qv_scale=self.qv_scale, scales=None if scales is None else self.scales,
            marginals=self.marginals or None, marginal_weight=self.marginal_weight,
        )

    def _features(self, paths: torch.Tensor, s: float) -> torch.Tensor:
        x = paths * s
        if self.qv:
            inc = torch.diff(paths, dim=1).pow(2)
            qv = torch.cat([inc.new_zeros(inc.shape[0], 1, inc.shape[2]), inc.cumsum(1)], 1)
            x = torch.cat([x, qv * (self.qv_scale * s * s)], dim=-1)
        return x

    def _sig(self, paths: torch.Tensor, s: float) -> torch.Tensor:
        return signature(
            self._features(paths, s), self.depth, time_aug=self.time_aug,
            basepoint=self.basepoint, lead_lag=self.lead_lag, backend=self.backend,
        )

    def forward(self, fake_paths: torch.Tensor, real_paths: torch.Tensor) -> torch.Tensor:
        _check_pair(fake_paths, real_paths)
        sq = 0.0
        for s in self.scales:
            sq = sq + self._squared_distance(fake_paths, real_paths, s)
        for h in self.marginals:
            sq = sq + self.marginal_weight * _marginal_w2(fake_paths, real_paths.to(fake_paths), h)
        return sq if self.squared else sq.clamp_min(0).sqrt()

    def _squared_distance(self, fake_paths, real_paths, s: float) -> torch.Tensor:
        c = fake_paths.shape[-1] * (2 if self.qv else 1)
        d = c * (2 if self.lead_lag else 1) + int(self.time_aug)
        s_fake = self._sig(fake_paths, s)
        with torch.no_grad():
            s_real = self._sig(real_paths.to(fake_paths.dtype), s)
        diff = split_levels(s_fake.mean(0) - s_real.mean(0), d, self.depth)
        if self.level_scaling == "data":
            tiny = torch.finfo(s_real.dtype).tiny ** 0.5
            norms = [
                lvl.pow(2).sum(-1).mean().sqrt().clamp_min(tiny)
                for lvl in split_levels(s_real, d, self.depth)
            ]
            weights = [1.0 / n for n in norms]
        elif self.level_scaling == "factorial":
            weights = [float(math.factorial(k)) for k in range(1, self.depth + 1)]
        else:
            weights = [1.0] * self.depth
        return sum((w * dk).pow(2).sum() for w, dk in zip(weights, diff))


@register("sigkernel")
class SigKernelMMD(Loss):
    """Signature-kernel MMD^2 (unbiased) / scoring rule between model and data path laws.

        MMD^2_u = 1/(m(m-1)) sum_{i != j} k(X_i, X_j) - 2/(mn) sum_{i,j} k(X_i, Y_j)
                  + 1/(n(n-1)) sum_{i != j} k(Y_i, Y_j)

    with k(x, y) = <S(x), S(y)> the (untruncated) signature kernel of the augmented paths
    (time first, basepoint, optional lead-lag) with a static kernel on R^d, computed by the
    Goursat-PDE solver of pysiglib. The first two terms are the expected signature-kernel
    score of Issa et al. 2023, phi(P, y) = E k(X, X') - 2 E k(X, y), averaged over the data;
    ``objective="score"`` returns that (it differs from MMD^2 by a constant in the model, so
    gradients are the same and the data-data Gram matrix is skipped). The score is strictly
    proper: the true law minimises its expectation. E[MMD^2_u] = MMD^2 >= 0, zero iff the laws
    agree (the kernel is characteristic on time-augmented paths with basepoint).

    Cost: the three Gram matrices cost batch^2 x length^2 x 4^dyadic_order PDE cells (timings:
    ``benchmarks/README.md``). Defaults therefore: dyadic order 0, float32 when the paths are
    float32, ``subsample`` available to thin long windows (cost / subsample^2), and recipes use
    batch <= 64
    (``nsf.calibrate`` uses batch 32, subsample 2 and an RBF static kernel of bandwidth 1 on
    normalised paths: with the linear static kernel the signature kernel grows like
    exp(scale |x|^2) and the estimator becomes heavy-tailed on paths of size about 1).

    Args:
        static_kernel: "linear" (k0(x, y) = scale <x, y>) or "rbf" (bandwidth ``sigma``).
        scale: multiplies the linear static kernel; for paths of size |X| the signature
            kernel's high levels behave like (scale |X|^2)^k / (k!)^2.
        sigma: RBF bandwidth.
        dyadic_order: PDE grid refinement 2^dyadic_order per step (0 = the data grid).
        lead_lag: lead-lag transform before the kernel.
        time_aug: add time (uniform on [0, 1]) as the first channel.
        basepoint: prepend the origin.
        subsample: keep every ``subsample``-th point (always the last one too).
        objective: "mmd" (default) or "score".
        dtype: compute dtype (None = the paths' dtype).
        n_jobs: pysiglib threads (None: the CPUs this process may use).

    Shape:
        fake_paths, real_paths: (batch, length, channels), batch >= 2 -> scalar.

    References:
        Issa, Horvath, Lemercier, Salvi 2023, "Non-adversarial training of Neural SDEs with
        signature kernel scores", arXiv 2305.16274; Salvi et al. 2021, "The signature kernel
        is the solution of a Goursat PDE".
    """

    def __init__(
        self,
        *,
        static_kernel: str = "linear",
        scale: float = 1.0,
        sigma: float = 1.0,
        dyadic_order: int = 0,
        lead_lag: bool = False,
        time_aug: bool = True,
        basepoint: bool = True,
        subsample: int = 1,
        objective: str = "mmd",
        dtype: str | None = None,
        n_jobs: int | None = None,
    ) -> None:
        super().__init__()
        if objective not in ("mmd", "score"):
            raise ValueError(f"objective must be 'mmd' or 'score', got {objective!r}")
        check_int("dyadic_order", dyadic_order, 0)
        check_int("subsample", subsample)
        if dtype not in (None, "float32", "float64"):
            raise ValueError(f"dtype must be None, 'float32' or 'float64', got {dtype!r}")
        self.kernel = make_static_kernel(static_kernel, sigma=float(sigma), scale=float(scale))
        self.dyadic_order = dyadic_order
        self.lead_lag = lead_lag
        self.time_aug = time_aug
        self.basepoint = basepoint
        self.subsample = subsample
        self.objective = objective
        self.dtype = None if dtype is None else getattr(torch, dtype)
        self.n_jobs = n_jobs
        self._config = dict(
            static_kernel=static_kernel, scale=float(scale), sigma=float(sigma),
            dyadic_order=dyadic_order, lead_lag=lead_lag, time_aug=time_aug,
            basepoint=basepoint, subsample=subsample, objective=objective, dtype=dtype,
            n_jobs=n_jobs,
        )

    def _prep(self, paths: torch.Tensor) -> torch.Tensor:
        if self.subsample > 1:
            length = paths.shape[1]
            idx = list(range(0, length, self.subsample))
            if idx[-1] != length - 1:
                idx.append(length - 1)
            ts = torch.tensor(idx, dtype=paths.dtype, device=paths.device) / (length - 1)
            paths = paths[:, idx]
        else:
            ts = None
        if self.dtype is not None:
            paths = paths.to(self.dtype)
        out = augment(
            paths, ts=ts, time_aug=self.time_aug, basepoint=self.basepoint, lead_lag=self.lead_lag
        )
        return out.contiguous()

    def gram(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Signature-kernel Gram matrix of two batches of already-prepared paths."""
        return sig_kernel_gram(x, y, kernel=self.kernel, dyadic_order=self.dyadic_order,
                               n_jobs=self.n_jobs)

    def forward(self, fake_paths: torch.Tensor, real_paths: torch.Tensor) -> torch.Tensor:
        _check_pair(fake_paths, real_paths)
        m, n = fake_paths.shape[0], real_paths.shape[0]
        if m < 2 or n < 2:
            raise ValueError(f"sigkernel needs batches of at least 2 paths, got {m} and {n}")
        x = self._prep(fake_paths)
        y = self._prep(real_paths.to(fake_paths.dtype)).detach()
        kxx = self.gram(x, x)
        kxy = self.gram(x, y)
        out = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1)) - 2.0 * kxy.mean()
        if self.objective == "mmd":
            with torch.no_grad():
                kyy = self.gram(y, y)
                const = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
            out = out + const
        return out.to(fake_paths.dtype)
