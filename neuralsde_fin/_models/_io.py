"""Safe checkpoint files: atomic writes, ``torch.load(weights_only=True)``, clear errors.

A file holds one dict of tensors and plain Python values (str, int, float, bool, lists,
dicts); configuration travels as a JSON string inside it. Nothing is ever unpickled beyond
what ``weights_only=True`` allows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from neuralsde_fin._errors import CheckpointError
from neuralsde_fin._io import atomic_writer


def atomic_save(obj: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``obj`` with ``torch.save`` atomically (``_io.atomic_writer``): a crash mid-write
    leaves either the old file or none, never a truncated one; the mode follows the umask."""
    with atomic_writer(path) as tmp:
        torch.save(obj, tmp)


def safe_load(path: str | os.PathLike, *, kind: str) -> dict[str, Any]:
    """Load a checkpoint written by :func:`atomic_save` and check its ``format`` field.

    Raises:
        CheckpointError: the file is missing, truncated, corrupted, or not a ``kind`` file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every load failure becomes one clear error
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated or corrupted and cannot be loaded ({msg})"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != kind:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a {kind!r} file")
    return obj


#: The ``format`` field of a market model checkpoint, and its current version (the versions
#: and the converter from version 1: ``_checkpoint.py``).
MODEL_FORMAT = "neuralsde_fin.MarketModel"
MODEL_VERSION = 2


def checkpoint_dict(model: Any) -> dict[str, Any]:
    """The checkpoint dict of a model with ``config()``, ``info`` and a state dict."""
    import json

    return {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "config": json.dumps(model.config()),
        "info": json.dumps(getattr(model, "info", {})),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path`` (atomic, the umask's mode); refuses non-finite weights."""
    for k, v in model.state_dict().items():
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"refusing to save non-finite weights ({k})")
    atomic_save(checkpoint_dict(model), path)
