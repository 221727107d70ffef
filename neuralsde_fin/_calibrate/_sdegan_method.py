"""The "sdegan" calibration method: a neural CDE discriminator as a loss of the shared loop.

The shared training loop (``_train.py``) simulates the market model's normalised windows and
asks the loss for a generator objective; an adversarial loss updates its own parameters in the
hook ``before_generator_step``. For the SDE-GAN:

* ``forward(fake, real)``: the generator's objective  -(mean D(fake) - mean D(real)), real and
  generated windows scored in one batched CDE solve (reversible-Heun adjoint, so the gradient
  reaches the generated paths). Its backward pass also leaves the gradient of the critic loss
  mean D(fake) - mean D(real) (with the opposite sign) on the discriminator's parameters: one
  pass serves both networks, as in torchsde's sde_gan example;
* ``before_generator_step(fake, real)``: the discriminator's update from those gradients
  (Adadelta with its own learning rate and weight decay), then weight clipping. With the
  gradient penalty (``lipschitz="gp"``) the critic gets its own pass on detached fakes instead,
  and the generator's objective is -mean D(fake).

Paths are time-augmented (t = 0, 1, ..., one unit per observation) and NaN observations in the
real windows are filled by linear interpolation in time before the CDE.

References:
    Kidger, Foster, Li, Lyons (2021), Neural SDEs as Infinite-Dimensional GANs, arXiv:2102.03657.
    Kidger, Foster, Li, Lyons (2021), Efficient and Accurate Gradients for Neural SDEs,
    arXiv:2105.13493.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from neuralsde_fin._brownian import counter_uniform, derive_seed
from neuralsde_fin._calibrate._discriminator import (
    GP_METHODS,
    CDEDiscriminator,
    clip_weights,
    interpolate_missing,
    time_augment,
    wasserstein_critic,
)
from neuralsde_fin._calibrate._losses import Loss, register
from neuralsde_fin._validate import check_int

# Keys of the loss's own random streams under ``calibrate``'s seed.
_KEY_DISC_INIT, _KEY_GP_ALPHA = 81, 82


@register("sdegan")
class SDEGANLoss(Loss):
    r"""Wasserstein SDE-GAN objective with a neural CDE discriminator (Kidger et al. 2021).

    .. math::
        \max_\phi\ \mathbb{E}[D_\phi(X^{real})] - \mathbb{E}[D_\phi(X^{fake})], \qquad
        \min_\theta\ -\mathbb{E}[D_\phi(X^{fake}_\theta)]

    with D a :class:`CDEDiscriminator` kept 1-Lipschitz-ish by weight clipping (or a gradient
    penalty). The discriminator is built at the first call (its input size is the number of
    assets) or when a checkpoint is loaded.

    Args:
        hidden: discriminator CDE hidden size.
        width: units per hidden layer of the discriminator's MLPs.
        depth: hidden layers of the discriminator's MLPs.
        d_lr: discriminator learning rate (Adadelta); the generator's is the loop's ``lr``.
        weight_decay: discriminator weight decay.
        lipschitz: "clip" (weight clipping to 1/out_features, the paper's default) or "gp".
        gp_coeff: gradient-penalty weight (``lipschitz="gp"``).
        gp_method: the penalty's gradient: "finite_difference" (default: first-order adjoint
            passes, the probes scored in the critic's solve; ``penalty_probes``) or
            "double_backward" (exact, through the solve; ``gradient_penalty``).
        init_scale: multiplier of the discriminator's initial parameters.

    Shape:
        fake, real: (batch, length, channels); returns ().
    """

    adversarial = True

    def __init__(
        self,
        hidden: int = 16,
        width: int = 16,
        depth: int = 1,
        d_lr: float = 1e-3,
        weight_decay: float = 0.01,
        lipschitz: str = "clip",
        gp_coeff: float = 10.0,
        init_scale: float = 1.0,
        gp_method: str = "finite_difference",
    ) -> None:
        super().__init__()
        if lipschitz not in ("clip", "gp"):
            raise ValueError(f"lipschitz must be 'clip' or 'gp', got {lipschitz!r}")
        if gp_method not in GP_METHODS:
            raise ValueError(f"gp_method must be one of {GP_METHODS}, got {gp_method!r}")
        for name, v in (("hidden", hidden), ("width", width), ("depth", depth)):
            check_int(name, v)
        if not d_lr > 0:
            raise ValueError(f"d_lr must be positive, got {d_lr!r}")
        self._config = dict(
            hidden=hidden,
            width=width,
            depth=depth,
            d_lr=float(d_lr),
            weight_decay=float(weight_decay),
            lipschitz=lipschitz,
            gp_coeff=float(gp_coeff),
            init_scale=float(init_scale),
            gp_method=gp_method,
        )
        self.disc: CDEDiscriminator | None = None
        self.d_opt: torch.optim.Optimizer | None = None
        self._pending_opt_state: dict[str, Any] | None = None

    def _build(self, channels: int, like: Tensor) -> None:
        c = self._config
        with torch.random.fork_rng(devices=[]):
            # the initial weights follow calibrate's seed (Loss.seed), not the global RNG
            torch.manual_seed(derive_seed(self.seed, _KEY_DISC_INIT, channels) % 2**63)
            disc = CDEDiscriminator(channels, c["hidden"], c["width"], c["depth"])
        with torch.no_grad():
            for p in disc.parameters():
                p.mul_(c["init_scale"])
        if c["lipschitz"] == "clip":
            clip_weights(disc)
        self.disc = disc.to(dtype=like.dtype, device=like.device)
        self.d_opt = torch.optim.Adadelta(
            self.disc.parameters(), lr=c["d_lr"], weight_decay=c["weight_decay"]
        )
        if self._pending_opt_state is not None:
            self.d_opt.load_state_dict(self._pending_opt_state)
            self._pending_opt_state = None

    def _augment(self, paths: Tensor) -> Tensor:
        ts = torch.arange(paths.shape[1], dtype=paths.dtype, device=paths.device)
        return time_augment(ts, interpolate_missing(paths, ts))

    def before_generator_step(self, fake_paths: Tensor, real_paths: Tensor) -> None:
        """The discriminator update, before the generator's loss is evaluated.

        With weight clipping (default) this applies the discriminator gradients left by the
        previous step's backward pass (one pass serves both networks, as in torchsde's
        example), then clips. With the gradient penalty it runs a separate critic pass on the
        detached fakes and real windows.
        """
        if self.disc is None:
            self._build(fake_paths.shape[-1], fake_paths)
        params = list(self.disc.parameters())
        if self._config["lipschitz"] == "gp":
            fake = self._augment(fake_paths.detach())
            real = self._augment(real_paths)
            # interpolation weights keyed by (seed, step, path): resumed runs are exact
            ids = torch.arange(fake.shape[0], device=fake.device)
            alpha = counter_uniform(self.seed, _KEY_GP_ALPHA, self.step, ids, dtype=fake.dtype,
                                    device=fake.device)
            with torch.enable_grad():
                critic, gp = wasserstein_critic(
                    self.disc, fake, real, penalty=True, gp_method=self._config["gp_method"],
                    alpha=alpha,
                )
                critic = critic + self._config["gp_coeff"] * gp
                self.d_opt.zero_grad(set_to_none=True)
                critic.backward()
        elif all(p.grad is None for p in params):
            return  # first step: no pass has been made yet
        else:
            for p in params:  # the pass minimised the generator's objective: flip for the critic
                if p.grad is not None:
                    p.grad.neg_()
        if all(bool(torch.isfinite(p.grad).all()) for p in params if p.grad is not None):
            self.d_opt.step()
        self.d_opt.zero_grad(set_to_none=True)
        if self._config["lipschitz"] == "clip":
            clip_weights(self.disc)

    def forward(self, fake_paths: Tensor, real_paths: Tensor) -> Tensor:
        """The generator's objective.

        With clipping: -(mean D(fake) - mean D(real)), real and fake scored in one batched CDE
        solve; its backward also leaves the discriminator's gradients, which the next
        ``before_generator_step`` applies. With the gradient penalty: -mean D(fake).
        """
        if self.disc is None:
            self._build(fake_paths.shape[-1], fake_paths)
        fake = self._augment(fake_paths)
        if self._config["lipschitz"] == "gp":
            return -self.disc(fake).mean()
        critic, _ = wasserstein_critic(self.disc, fake, self._augment(real_paths))
        return -critic

    # ------------------------------------------------------------- checkpointing
    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if self.disc is None and "disc.readout.weight" in state_dict:
            w = state_dict["disc.readin.0.weight"]
            self._build(w.shape[1] - 1, w)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def training_state(self) -> dict[str, Any]:
        if self.d_opt is None:
            return {}
        grads = [None if p.grad is None else p.grad.detach().cpu() for p in self.disc.parameters()]
        return {"d_opt": self.d_opt.state_dict(), "d_grads": grads}

    def load_training_state(self, state: dict[str, Any]) -> None:
        if "d_opt" in state:
            if self.d_opt is None:
                self._pending_opt_state = state["d_opt"]
            else:
                self.d_opt.load_state_dict(state["d_opt"])
        if self.disc is not None and "d_grads" in state:
            for p, g in zip(self.disc.parameters(), state["d_grads"]):
                p.grad = None if g is None else g.to(dtype=p.dtype, device=p.device)
