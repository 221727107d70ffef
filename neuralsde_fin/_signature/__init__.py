"""Signature features of paths (signatory or pysiglib backends)."""

from __future__ import annotations

from neuralsde_fin._signature._signature import (
    BACKENDS,
    augment,
    available_backends,
    expected_signature_line,
    lead_lag_transform,
    raw_signature,
    resolve_backend,
    sig_channels,
    signature,
    split_levels,
)

__all__ = [
    "BACKENDS",
    "augment",
    "available_backends",
    "expected_signature_line",
    "lead_lag_transform",
    "raw_signature",
    "resolve_backend",
    "sig_channels",
    "signature",
    "split_levels",
]
