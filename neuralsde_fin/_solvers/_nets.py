"""The package's neural vector fields, the MLP builder, and their conventional twins.

:class:`MLPDriftDiffusion` (drift and diffusion MLPs) and :class:`CDEFunc` (a CDE vector
field) follow the protocols of torchsde / torchcde, so they also run there, and expose
``_nsf_vector_field()``, which ``sdeint`` / ``cdeint`` call once per solve to get the fused
evaluator of ``_fused.py`` (one input matmul for both nets, time as a rank-1 bias, folded
LipSwish, hand-written VJP, and on the CPU the native whole-solve kernel of ``_native_step``).
``.unfused()`` gives the same field written the conventional way (``nn.Sequential`` nets on
cat([t, y])), the peer in tests and benchmarks.

References:
    Kidger, Foster, Li, Lyons (2021), Neural SDEs as Infinite-Dimensional GANs,
    arXiv:2102.03657 (architecture: MLPs with LipSwish, time input, tanh outputs).
    Chen, Behrmann, Duvenaud, Jacobsen (2019), Residual Flows, arXiv:1906.02735 (LipSwish).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuralsde_fin._solvers._fused import FINALS, LIPSWISH_SCALE, FusedField, FusedMLPs
from neuralsde_fin._validate import check_int

__all__ = ["CDEFunc", "FusedSDE", "LipSwish", "MLPDriftDiffusion", "PlainCDEFunc", "PlainSDE",
           "mlp"]


class LipSwish(nn.Module):
    """LipSwish activation, 0.909 x sigmoid(x): a 1-Lipschitz smooth ReLU.

    Shape:
        any; elementwise.
    """

    def forward(self, x: Tensor) -> Tensor:
        return LIPSWISH_SCALE * F.silu(x)


def mlp(in_features: int, out_features: int, width: int, depth: int) -> nn.Sequential:
    """An MLP with ``depth`` hidden layers of ``width`` LipSwish units (no output activation).

    The package's one MLP builder: the market model's initial-state map, the discriminator's
    read-in, and the conventional twins of the fused fields.

    Shape:
        (..., in_features) -> (..., out_features).
    """
    layers: list[nn.Module] = [nn.Linear(in_features, width), LipSwish()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), LipSwish()]
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def _check_final(name: str, fin: str | None) -> None:
    if fin not in FINALS:
        raise ValueError(f"{name} must be one of {sorted(map(str, FINALS))}, got {fin!r}")


class FusedSDE:
    """torchsde's ``f_and_g`` / ``f`` / ``g`` for a module whose ``_nsf_vector_field()`` is a
    fused evaluator (the package's SDEs share it)."""

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


class MLPDriftDiffusion(FusedSDE, nn.Module):
    r"""Neural SDE vector fields: drift and diffusion MLPs with time input, evaluated fused.

    .. math::
        dy_t = f_\theta(t, x_t)\,dt + g_\theta(t, x_t) \circ dW_t, \qquad x_t = y_t[s:]

    with f and g MLPs of ``depth`` hidden layers of ``width`` units and LipSwish activations,
    whose input is (t, x): the state from column ``input_start`` = s on (all of it by default).
    Follows torchsde's protocol (``f``, ``g``, ``f_and_g``, ``sde_type``, ``noise_type``) so it
    runs unchanged in torchsde; ``nsf.sdeint`` evaluates it on the fused fast path.

    Args:
        state: state size d.
        noise: noise size m (ignored for diagonal noise, where m = d).
        width: hidden units per layer.
        depth: number of hidden layers.
        noise_type: "general" (g is (batch, d, m)) or "diagonal" (g is (batch, d)).
        sde_type: "stratonovich" (reversible Heun, Heun) or "ito" (Euler).
        drift_final: None or "tanh" / "sigmoid" / "softplus", applied to the drift output.
        diffusion_final: likewise for the diffusion output (Kidger et al. use tanh on both).
        input_start: the nets read the state from this column on (0: all of it).
        time_input: feed t to the nets (else the field is time-homogeneous).

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
        input_start: int = 0,
        time_input: bool = True,
    ) -> None:
        super().__init__()
        if noise_type not in ("general", "diagonal"):
            raise ValueError(f"noise_type must be 'general' or 'diagonal', got {noise_type!r}")
        if sde_type not in ("ito", "stratonovich"):
            raise ValueError(f"sde_type must be 'ito' or 'stratonovich', got {sde_type!r}")
        _check_final("drift_final", drift_final)
        _check_final("diffusion_final", diffusion_final)
        check_int("input_start", input_start, 0, state - 1)
        self.noise_type, self.sde_type = noise_type, sde_type
        self.state = state
        self.noise = state if noise_type == "diagonal" else noise
        self.input_start = input_start
        self._g_shape = (state,) if noise_type == "diagonal" else (state, self.noise)
        self._finals = (FINALS[drift_final], FINALS[diffusion_final])
        self._final_names = (drift_final, diffusion_final)
        g_out = state * self.noise if self.noise_type != "diagonal" else state
        self.net = FusedMLPs(state - input_start, [state, g_out], width, depth,
                             time_input=time_input)

    def _nsf_vector_field(self) -> FusedField:
        return FusedField(self)

    def unfused(self) -> PlainSDE:
        """The same SDE written the conventional way (separate nets, t concatenated)."""
        return PlainSDE(self)


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
    input_start = 0

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
        _check_final("final", final)
        self.hidden, self.channels = hidden, channels
        self._g_shape = (hidden, channels)
        self._finals = (FINALS[final],)
        self.net = FusedMLPs(hidden, [hidden * channels], width, depth)

    def _nsf_vector_field(self) -> FusedField:
        return FusedField(self)

    def unfused(self) -> PlainCDEFunc:
        """The same vector field written the conventional way (t concatenated to h)."""
        return PlainCDEFunc(self)

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=h.dtype, device=h.device)
        return self._nsf_vector_field().f_and_g(t, h)[1].contiguous()


class _Final(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


def _plain_mlps(net: FusedMLPs, finals: tuple) -> list[nn.Sequential]:
    """Ordinary nn.Sequential MLPs on cat([t, x]) with the same weights as ``net``."""
    seqs = []
    w = net.width
    with torch.no_grad():
        for i, out in enumerate(net.outs):
            seq = mlp(net.in_weight.shape[1] + 1, out, w, net.depth)
            lins = [m for m in seq if isinstance(m, nn.Linear)]
            rows = slice(i * w, (i + 1) * w)
            lins[0].weight.copy_(torch.cat([net.in_time[rows, None], net.in_weight[rows]], 1))
            lins[0].bias.copy_(net.in_bias[rows])
            for j in range(net.depth - 1):
                lins[j + 1].weight.copy_(net.hidden_weight[j, i])
                lins[j + 1].bias.copy_(net.hidden_bias[j, i, 0])
            lins[-1].weight.copy_(net.out_weight[i])
            lins[-1].bias.copy_(net.out_bias[i])
            if finals[i] is not None:
                seq.append(_Final(finals[i]))
            seqs.append(seq)
    return [s.to(net.in_weight.dtype) for s in seqs]


class PlainSDE(nn.Module):
    """A torchsde-style SDE with separate drift / diffusion ``nn.Sequential`` nets on cat([t, x]).

    Built by :meth:`MLPDriftDiffusion.unfused` with the same weights (x the slice of the state
    the nets read): the conventional way to write the model, the peer in tests and benchmarks.
    """

    def __init__(self, fused: MLPDriftDiffusion) -> None:
        super().__init__()
        self.noise_type, self.sde_type = fused.noise_type, fused.sde_type
        self._g_shape = fused._g_shape
        self.input_start = fused.input_start
        self.drift, self.diffusion = _plain_mlps(fused.net, fused._finals)

    def _in(self, t: Tensor, y: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=y.dtype, device=y.device)
        return torch.cat([t.expand(y.shape[0], 1), y[:, self.input_start :]], dim=1)

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
