"""The one error type the checkpoint edge raises: a single line saying what is wrong and where."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A file or folder that is not (or not entirely) a checkpoint fluxai can read."""
