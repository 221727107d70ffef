"""SDE-GAN: a neural SDE generator trained against a neural CDE discriminator (Wasserstein loss).

One training step (the recipe of Kidger et al. and of torchsde's ``examples/sde_gan.py``):

    X_fake = G_theta(noise),   L = mean D_phi(X_fake) - mean D_phi(X_real)
    phi   <- phi   - lr_D grad_phi L        (the discriminator scores real paths high)
    theta <- theta + lr_G grad_theta L      (the generator raises mean D(X_fake))

from a single backward pass (the generator's gradients are negated), then the discriminator's
weights are clipped (Lipschitz control). Real and generated paths go through the discriminator
in one batched CDE solve. Both networks run on the solver core's fast paths: the generator's
drift and diffusion are one fused :class:`~neuralsde_fin._solvers.MLPDriftDiffusion` solved by
``nsf.sdeint`` (reversible Heun, exact adjoint), the discriminator a fused ``CDEFunc`` solved by
``nsf.cdeint`` (reversible Heun, exact adjoint, gradients to the generated path).

References:
    Kidger, Foster, Li, Lyons (2021), Neural SDEs as Infinite-Dimensional GANs, arXiv:2102.03657.
    Kidger, Foster, Li, Lyons (2021), Efficient and Accurate Gradients for Neural SDEs,
    arXiv:2105.13493 (reversible Heun, adjoint, clipping, Adadelta, SWA).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from neuralsde_fin._brownian import counter_normal
from neuralsde_fin._calibrate._discriminator import (
    GP_METHODS,
    CDEDiscriminator,
    clip_weights,
    interpolate_missing,
    mlp,
    time_augment,
    wasserstein_critic,
)
from neuralsde_fin._calibrate._ganfields import GANDriftDiffusion
from neuralsde_fin._solvers import sdeint

__all__ = [
    "GridBrownian",
    "SDEGANConfig",
    "SDEGANTrainer",
    "SDEGenerator",
    "sdegan_step",
]


#: Streams of the counter-based noise of ``SDEGenerator.simulate_normalised``.
_STREAM_V, _STREAM_W = 71, 72


class GridBrownian:
    """Brownian increments on a fixed grid, drawn once (one ``randn`` call) and replayed.

    The generator needs fresh noise at every training step and the same noise in the adjoint's
    backward pass; on a fixed grid that is one Gaussian tensor, with no tree to walk.

    Args:
        grid: the solver grid.
        shape: (batch, noise).
        generator: optional ``torch.Generator`` for reproducibility.

    Shape:
        increments(times) for a contiguous slice ``times`` of the grid: (len(times) - 1, *shape).
    """

    def __init__(
        self, grid: Tensor, shape: tuple[int, int], generator: torch.Generator | None = None
    ) -> None:
        self.shape = tuple(shape)
        self.t0 = float(grid[0])
        dts = grid[1:] - grid[:-1]
        self.dt = float(dts[0])
        self.dw = torch.randn(
            (len(grid) - 1, *shape), dtype=grid.dtype, device=grid.device, generator=generator
        ) * dts.sqrt().view(-1, 1, 1)
        self._index = {round(float(t), 9): i for i, t in enumerate(grid.tolist())}

    @classmethod
    def from_increments(cls, grid: Tensor, dw: Tensor) -> GridBrownian:
        """Replay given increments ``dw`` of shape (len(grid) - 1, batch, noise) on ``grid``."""
        self = cls.__new__(cls)
        self.shape = tuple(dw.shape[1:])
        self.t0, self.dt, self.dw = float(grid[0]), float(grid[1] - grid[0]), dw
        self._index = {round(float(t), 9): i for i, t in enumerate(grid.tolist())}
        return self

    def increments(self, times: Tensor) -> Tensor:
        lo = self._index[round(float(times[0]), 9)]
        return self.dw[lo : lo + len(times) - 1]

    def __call__(self, s: Tensor, t: Tensor) -> Tensor:
        lo, hi = self._index[round(float(s), 9)], self._index[round(float(t), 9)]
        return self.dw[lo:hi].sum(0)


class SDEGenerator(nn.Module):
    r"""Neural SDE generator of the SDE-GAN toy and benchmark: a path of ``data_size`` channels.

    .. math::
        x_0 = \zeta_\theta(V),\ V \sim N(0, I_{v}), \qquad
        dx_t = \mu_\theta(t, x_t)\,dt + \sigma_\theta(t, x_t) \circ dW_t, \qquad
        y_t = \ell_\theta(x_t)

    ``zeta`` is an MLP (LipSwish), ``mu`` and ``sigma`` one fused :class:`MLPDriftDiffusion` with
    tanh outputs (general noise, Stratonovich), ``l`` a linear readout. Solved by ``nsf.sdeint``
    with reversible Heun and (``adjoint=True``) the exact O(1)-memory adjoint.

    Initialisation (as torchsde's sde_gan example): the initial-condition MLP's parameters are
    multiplied by ``init_scale[0]`` (3) and the vector fields' by ``init_scale[1]`` (0.5), so the
    untrained law at t = 0 and its spread over time have about the data's scale.

    Args:
        data_size: channels of the generated path.
        initial_noise: size v of the initial noise V.
        noise: Brownian dimension.
        hidden: SDE state size.
        width: units per hidden layer of all MLPs.
        depth: hidden layers of all MLPs.
        init_scale: multipliers of the initial-condition and the vector-field parameters.
        length: observation times 0, 1, ..., length - 1 used by ``simulate_normalised`` (the
            shared training loop's interface).

    Shape:
        forward(ts, n_paths) -> (n_paths, len(ts), 1 + data_size), time in channel 0;
        simulate_normalised(batch, seed=, step=) -> (batch, length, data_size).

    References:
        Kidger, Foster, Li, Lyons (2021), Neural SDEs as Infinite-Dimensional GANs,
        arXiv:2102.03657, section 3.
    """

    def __init__(
        self,
        data_size: int,
        initial_noise: int = 5,
        noise: int = 3,
        hidden: int = 16,
        width: int = 16,
        depth: int = 1,
        *,
        init_scale: tuple[float, float] = (3.0, 0.5),
        length: int = 64,
    ) -> None:
        super().__init__()
        self._config = dict(
            data_size=data_size,
            initial_noise=initial_noise,
            noise=noise,
            hidden=hidden,
            width=width,
            depth=depth,
            init_scale=list(init_scale),
            length=length,
        )
        self.initial_noise, self.noise, self.length = initial_noise, noise, length
        self.info: dict = {}
        self.initial = mlp(initial_noise, hidden, width, depth)
        self.func = GANDriftDiffusion(
            hidden, noise, width, depth, drift_final="tanh", diffusion_final="tanh"
        )
        self.readout = nn.Linear(hidden, data_size)
        with torch.no_grad():
            for p in self.initial.parameters():
                p.mul_(init_scale[0])
            for p in self.func.parameters():
                p.mul_(init_scale[1])

    def forward(
        self,
        ts: Tensor,
        n_paths: int,
        *,
        dt: float | None = None,
        generator: torch.Generator | None = None,
        adjoint: bool = True,
        noise: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Sample ``n_paths`` time-augmented paths on ``ts`` (reversible Heun, step ``dt``).

        ``noise=(v, dw)`` gives the initial noise (n_paths, initial_noise) and the grid's
        Brownian increments (n_steps, n_paths, noise); otherwise both are drawn from
        ``generator``.
        """
        p = self.readout.weight
        if noise is None:
            v = torch.randn(
                n_paths, self.initial_noise, dtype=p.dtype, device=p.device, generator=generator
            )
        else:
            v = noise[0]
        x0 = self.initial(v)
        ts = ts.to(dtype=p.dtype, device=p.device)
        if dt is None:
            grid = ts
        else:
            n = round(float(ts[-1] - ts[0]) / dt)
            grid = ts[0] + dt * torch.arange(n + 1, dtype=p.dtype, device=p.device)
        if noise is None:
            bm = GridBrownian(grid, (n_paths, self.noise), generator)
        else:
            bm = GridBrownian.from_increments(grid, noise[1])
        xs = sdeint(self.func, x0, ts, bm=bm, dt=dt, adjoint=adjoint)
        return time_augment(ts, self.readout(xs.transpose(0, 1)))

    def simulate_normalised(
        self, batch: int, *, seed: int, step: int, adjoint: bool = True, path_offset: int = 0
    ) -> Tensor:
        """Training paths for the shared loop, global path ids ``path_offset + [0, batch)``.

        The noise is counter-based, a pure function of (seed, step, path id, time, channel), so
        ranks simulating disjoint path-id ranges reproduce a single process's batch.
        """
        p = self.readout.weight
        dev, dtype = p.device, p.dtype
        ids = torch.arange(path_offset, path_offset + batch, device=dev)
        v = counter_normal(
            seed, _STREAM_V, step, ids[:, None], torch.arange(self.initial_noise, device=dev),
            dtype=dtype, device=dev,
        )
        k = torch.arange(self.length - 1, device=dev)[:, None, None]
        dw = counter_normal(  # unit time steps: the increments are standard normals
            seed, _STREAM_W, step, k, ids[None, :, None], torch.arange(self.noise, device=dev),
            dtype=dtype, device=dev,
        )
        ts = torch.arange(self.length, dtype=dtype, device=dev)
        return self(ts, batch, adjoint=adjoint, noise=(v, dw))[..., 1:]

    def config(self) -> dict:
        """Constructor arguments (plain JSON types)."""
        return dict(self._config)


def sdegan_step(
    generator: nn.Module,
    discriminator: CDEDiscriminator,
    real: Tensor,
    ts: Tensor,
    g_opt: torch.optim.Optimizer,
    d_opt: torch.optim.Optimizer,
    *,
    lipschitz: str = "clip",
    gp_coeff: float = 10.0,
    gp_method: str = "finite_difference",
    rng: torch.Generator | None = None,
) -> float:
    r"""One SDE-GAN training step: one generator and one discriminator update (Wasserstein).

    .. math::
        L = \tfrac1B \textstyle\sum_i D(G(V_i, W_i)) - \tfrac1B \sum_i D(X^{real}_i)

    One backward pass of L (plus ``gp_coeff`` times the gradient penalty for the discriminator
    when ``lipschitz="gp"``); the discriminator descends L (real paths score high), the
    generator's gradients are negated so it ascends mean D(fake). Then ``clip_weights`` when
    ``lipschitz="clip"``. Real and fake paths are scored in one batched CDE solve.

    Args:
        generator: ``generator(ts, n_paths, generator=rng)`` returns time-augmented paths.
        discriminator: the CDE discriminator.
        real: a batch of real time-augmented paths (NaN already filled).
        ts: observation times.
        g_opt: the generator's optimiser.
        d_opt: the discriminator's optimiser.
        lipschitz: "clip" (weight clipping) or "gp" (gradient penalty).
        gp_coeff: gradient-penalty weight (``lipschitz="gp"`` only).
        gp_method: how the penalty's gradient is computed (``GP_METHODS``: "finite_difference",
            from first-order passes, or "double_backward").
        rng: torch.Generator for the generator's noise.

    Returns:
        The Wasserstein loss L of this batch, before the update.

    Shape:
        real: (batch, len(ts), 1 + data_size).
    """
    fake = generator(ts, real.shape[0], generator=rng)
    loss, gp = wasserstein_critic(
        discriminator, fake, real, penalty=lipschitz == "gp", gp_method=gp_method
    )
    total = loss if gp is None else loss + gp_coeff * gp
    total.backward()
    for p in generator.parameters():
        if p.grad is not None:
            p.grad.neg_()
    g_opt.step()
    d_opt.step()
    g_opt.zero_grad(set_to_none=True)
    d_opt.zero_grad(set_to_none=True)
    if lipschitz == "clip":
        clip_weights(discriminator)
    return float(loss.detach())


@dataclass
class SDEGANConfig:
    """Knobs of the SDE-GAN recipe, with defaults that train stably (see torchsde's example).

    Speed: with ``compile`` on, the reversible Heun steps of the generator and the
    discriminator, forward and adjoint backward, run ``torch.compile``-d (20-30 s of compilation
    with a cold Inductor cache, once per process, architecture and batch size; then each
    training step is 1.2-1.6x faster, ``benchmarks/bench_sdegan.py``). By default that is the
    case for runs of at least 1000 steps.

    Attributes:
        initial_noise: generator's initial-noise size.
        noise: Brownian dimension of the generator.
        hidden: hidden size of the generator SDE and the discriminator CDE.
        width: units per hidden layer of every MLP.
        depth: hidden layers of every MLP.
        batch: paths per step (real and generated each).
        steps: training steps (each one generator and one discriminator update).
        g_lr: generator learning rate (Adadelta).
        d_lr: discriminator learning rate (Adadelta); larger than ``g_lr``, the discriminator
            must track the generator.
        weight_decay: L2 weight decay of both optimisers (damps the GAN's oscillations).
        swa_start: fraction of ``steps`` after which the weights are averaged (SWA); the
            averaged generator is the result.
        lipschitz: "clip" (weight clipping, default, as in the paper) or "gp" (gradient
            penalty, with a separate critic pass per step). On the paper's OU toy with a
            10-minute CPU budget only "gp" matched the marginals (KS < 0.1 at all five times,
            2000 steps); clipping left the marginal at 10% of the interval at KS 0.16-0.22
            (``tests/calibrate/test_sdegan_toy.py``).
        gp_coeff: gradient-penalty weight.
        gp_method: how the penalty's gradient is computed: "finite_difference" (default;
            first-order adjoint passes, ``penalty_probes``, relative error about 1e-4 in
            float32) or "double_backward" (exact, through the solve, about 1.5x slower per
            toy step).
        init_scale: generator initial-condition / vector-field parameter multipliers.
        dt: generator step (None: one step per observation interval).
        seed: seed of parameters, noise and batches.
        compile: compile the solver steps (True / False); None: ``NEURALSDE_FIN_COMPILE`` if
            set, else on when ``steps >= 1000`` (``nsf.compiled_solvers``).
    """

    initial_noise: int = 5
    noise: int = 3
    hidden: int = 16
    width: int = 16
    depth: int = 1
    batch: int = 1024
    steps: int = 10000
    g_lr: float = 2e-4
    d_lr: float = 1e-3
    weight_decay: float = 0.01
    swa_start: float = 0.5
    lipschitz: str = "clip"
    gp_coeff: float = 10.0
    gp_method: str = "finite_difference"
    init_scale: tuple[float, float] = field(default=(3.0, 0.5))
    dt: float | None = None
    seed: int = 0
    compile: bool | None = None

    def validate(self) -> None:
        """Raise a one-line ValueError on the first bad knob."""
        for name in ("initial_noise", "noise", "hidden", "width", "depth", "batch", "steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("g_lr", "d_lr"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        if not (self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not (0.0 <= self.swa_start <= 1.0):
            raise ValueError(f"swa_start must be a fraction in [0, 1], got {self.swa_start!r}")
        if self.gp_method not in GP_METHODS:
            raise ValueError(f"gp_method must be one of {GP_METHODS}, got {self.gp_method!r}")
        if self.compile is not None and not isinstance(self.compile, bool):
            raise ValueError(f"compile must be True, False or None, got {self.compile!r}")
        if self.lipschitz not in ("clip", "gp"):
            raise ValueError(f"lipschitz must be 'clip' or 'gp', got {self.lipschitz!r}")


class SDEGANTrainer:
    r"""Fit an :class:`SDEGenerator` to a set of paths with the shared loop and the sdegan loss.

    The path-law counterpart of ``nsf.calibrate(method="sdegan")`` (which fits the market
    model to price windows): the same training loop (``_train.train``: NaN guard, SWA from
    ``swa_start``, Adadelta with weight decay) and the same loss (:class:`SDEGANLoss`: neural
    CDE discriminator with its own Adadelta learning rate, weight clipping), applied to a
    generic generator. Missing observations (NaN) are filled by linear interpolation in time.

    Args:
        data: observed paths, NaN where missing.
        ts: observation times; must be 0, 1, ..., length - 1 (one unit per observation).
        config: the recipe's knobs.

    Shape:
        data: (n_samples, len(ts), data_size).
    """

    def __init__(self, data: Tensor, ts: Tensor, config: SDEGANConfig | None = None) -> None:
        from neuralsde_fin._calibrate._sdegan_method import SDEGANLoss

        cfg = config or SDEGANConfig()
        cfg.validate()
        if not torch.is_tensor(data) or data.dim() != 3:
            raise ValueError(f"data must be a (n_samples, length, channels) tensor, got {data!r}")
        if data.shape[1] != len(ts):
            raise ValueError(f"data has {data.shape[1]} times but ts has {len(ts)}")
        if not torch.equal(ts.to(torch.float64), torch.arange(len(ts), dtype=torch.float64)):
            raise ValueError(f"ts must be 0, 1, ..., {len(ts) - 1}, got {ts.tolist()}")
        self.cfg = cfg
        self.ts = ts.to(data.dtype)
        self.real = interpolate_missing(data, self.ts)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.generator = SDEGenerator(
                data.shape[2],
                cfg.initial_noise,
                cfg.noise,
                cfg.hidden,
                cfg.width,
                cfg.depth,
                init_scale=cfg.init_scale,
                length=len(ts),
            ).to(dtype=data.dtype, device=data.device)
        self.loss = SDEGANLoss(
            hidden=cfg.hidden,
            width=cfg.width,
            depth=cfg.depth,
            d_lr=cfg.d_lr,
            weight_decay=cfg.weight_decay,
            lipschitz=cfg.lipschitz,
            gp_coeff=cfg.gp_coeff,
            gp_method=cfg.gp_method,
        )
        self.losses: list[float] = []

    def train(self, *, progress: bool = False) -> list[float]:
        """Run ``config.steps`` steps of the shared loop; return the per-step losses."""
        from neuralsde_fin._calibrate._train import train

        cfg = self.cfg
        train(
            self.generator,
            self.loss,
            self.real,
            steps=cfg.steps,
            batch=cfg.batch,
            lr=cfg.g_lr,
            seed=cfg.seed,
            optimizer="adadelta",
            swa=cfg.swa_start < 1.0,
            swa_start=cfg.swa_start,
            progress=progress,
            adjoint=True,
            weight_decay=cfg.weight_decay,
            compile=cfg.compile,
        )
        self.losses = list(self.generator.info.get("history", []))
        return self.losses

    def result(self) -> SDEGenerator:
        """The trained generator (SWA-averaged weights after :meth:`train`)."""
        return self.generator

    @torch.no_grad()
    def sample(self, n_paths: int, *, seed: int = 0) -> Tensor:
        """``n_paths`` generated paths (without the time channel)."""
        g = torch.Generator(device=self.real.device).manual_seed(seed)
        return self.generator(self.ts, n_paths, dt=self.cfg.dt, generator=g)[..., 1:]
