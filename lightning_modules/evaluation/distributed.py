"""Gathering per-case rows from every DDP rank before any aggregate is computed."""

from __future__ import annotations

import torch.distributed as dist


def gather_rows(rows: list[dict]) -> list[dict]:
    """All ranks' rows on every rank (a no-op in a single process).

    Metric rows are small Python dicts of mixed types, so they travel as objects rather than
    through Lightning's tensor ``all_gather``.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(rows)
    gathered: list[list[dict] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, rows)
    return [row for part in gathered for row in part]
