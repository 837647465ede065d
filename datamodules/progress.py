"""Progress of long loops over cases (data check, preprocessing, phantoms): a live bar on a
terminal, a plain line every ``every_seconds`` elsewhere (CI and SLURM logs keep no live bars).

Written here rather than taken from Lightning because these loops run outside any Trainer;
``rich`` (Lightning's own progress-bar library) draws the terminal bar.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")


def on_terminal() -> bool:
    """Whether output goes to an interactive terminal (live bars) or to a file or pipe (plain lines)."""
    return sys.stdout.isatty() and sys.stderr.isatty()


def reported(items: Iterable[Item], total: int, what: str, every_seconds: float = 30.0) -> Iterator[Item]:
    """Yield ``items``, showing ``what: done/total`` with elapsed time and an estimate of the rest.

    Args:
        items: the loop's items.
        total: how many there are.
        what: what the loop does (``checking files``).
        every_seconds: off a terminal, the longest silence between two lines (the first and the
            last item are always reported).
    """
    if total <= 0:
        return
    if on_terminal():
        from rich.progress import track

        yield from track(items, total=total, description=what, console=None, transient=False)
        return
    start = last = time.monotonic()
    print(f"{what}: 0/{total}", file=sys.stderr, flush=True)
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if done == total or now - last >= every_seconds:
            elapsed = now - start
            rest = elapsed / done * (total - done)
            print(f"{what}: {done}/{total} ({elapsed:.0f} s, about {rest:.0f} s left)", file=sys.stderr, flush=True)
            last = now
