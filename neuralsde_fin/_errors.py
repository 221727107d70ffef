"""Exceptions raised at the package's boundaries."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data; the message names the file, the row as numbered in it, and the column."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, truncated, corrupted or of another format."""


class RecipeError(ValueError):
    """A calibration recipe that cannot be used; the message names the file and the key."""
