"""Market model checkpoints: the file format, its versions, and the converter from version 1.

A checkpoint is one dict written atomically by ``_io.atomic_save`` and read back with
``torch.load(weights_only=True)``:

    {"format": "neuralsde_fin.MarketModel", "version": 2, "config": <JSON>, "info": <JSON>,
     "state_dict": {name: tensor}}

Versions:

- 1 (before the market model ran on the solver core's fused field): separate ``nn.Sequential``
  drift and diffusion nets on cat([tau, h]). Loaded through :func:`convert_v1`, which maps the
  same weights onto the fused layers exactly (the models are the same function).
- 2: the fused field (``net.*``), the initial map (``initial.*``), ``return_scale``.

A file of a newer version is refused with one line naming its version.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from neuralsde_fin._errors import CheckpointError
from neuralsde_fin._models._io import (
    MODEL_FORMAT,
    MODEL_VERSION,
    safe_load,
    save_model,
)
from neuralsde_fin._models._market import MarketModel

__all__ = ["FORMAT", "VERSION", "convert_v1", "load_model", "model_from_checkpoint", "save_model"]

FORMAT, VERSION = MODEL_FORMAT, MODEL_VERSION


def _linears(sd: dict[str, torch.Tensor], prefix: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) of the Linear layers ``prefix.{0,2,4,...}`` of a version-1 Sequential."""
    idx = sorted({int(k.split(".")[1]) for k in sd if k.startswith(prefix + ".")})
    return [(sd[f"{prefix}.{i}.weight"], sd[f"{prefix}.{i}.bias"]) for i in idx]


def convert_v1(config: dict[str, Any], sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A version-1 state dict as a version-2 one (the same function, fused layers).

    Version 1 held ``drift`` and ``diffusion`` as ``nn.Sequential`` MLPs on cat([tau, h]) (the
    time column first when ``time_input``); version 2 stacks their input layers into
    ``net.in_weight`` (h columns) and ``net.in_time`` (the tau column), their hidden layers into
    ``net.hidden_weight`` / ``hidden_bias``, and keeps the output layers as they are.
    """
    nets = [_linears(sd, "drift"), _linears(sd, "diffusion")]
    depth = int(config["depth"])
    if any(len(layers) != depth + 1 for layers in nets):
        raise ValueError(f"version-1 nets do not have {depth} hidden layers")
    t = int(config.get("time_input", True))
    out = {k: v for k, v in sd.items() if k.startswith("initial.") or k == "return_scale"}
    out["net.in_weight"] = torch.cat([layers[0][0][:, t:] for layers in nets])
    out["net.in_time"] = (torch.cat([layers[0][0][:, 0] for layers in nets]) if t
                          else torch.zeros(sum(layers[0][0].shape[0] for layers in nets)))
    out["net.in_bias"] = torch.cat([layers[0][1] for layers in nets])
    width = nets[0][0][0].shape[0]
    hw = [torch.stack([layers[j][0] for layers in nets]) for j in range(1, depth)]
    hb = [torch.stack([layers[j][1] for layers in nets])[:, None] for j in range(1, depth)]
    ref = nets[0][0][0]
    out["net.hidden_weight"] = (torch.stack(hw) if hw else ref.new_zeros(0, 2, width, width))
    out["net.hidden_bias"] = (torch.stack(hb) if hb else ref.new_zeros(0, 2, 1, width))
    for i, layers in enumerate(nets):
        out[f"net.out_weight.{i}"], out[f"net.out_bias.{i}"] = layers[-1]
    return out


def model_from_checkpoint(obj: dict[str, Any], where: str) -> MarketModel:
    """Build a MarketModel from a loaded checkpoint dict (format already checked)."""
    version = obj.get("version", 1)
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"checkpoint {where!r} has format version {version!r}; this neuralsde_fin reads "
            f"versions 1-{VERSION} (upgrade the package)"
        )
    try:
        cfg = json.loads(obj["config"])
        sd = obj["state_dict"]
        if version == 1:
            sd = convert_v1(cfg, sd)
        model = MarketModel(**cfg)
        model.load_state_dict(sd)
        model.info = json.loads(obj.get("info", "{}"))
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        msg = str(err).splitlines()[0]
        raise CheckpointError(
            f"checkpoint {where!r} (format version {version}) has an invalid model: {msg}"
        ) from None
    return model


def load_model(path: str | os.PathLike) -> MarketModel:
    """Load a model written by ``MarketModel.save`` (``torch.load(weights_only=True)``).

    Version-1 files (written before the fused field) are converted on load.

    Raises:
        CheckpointError: missing, truncated or corrupted file, not a model checkpoint, or a
            newer format version.
    """
    obj = safe_load(path, kind=FORMAT)
    return model_from_checkpoint(obj, str(path))
