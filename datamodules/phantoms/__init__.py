"""Generated cardiac phantoms written in the real challenge layouts and label codes."""

from datamodules.phantoms.writer import write_phantoms

__all__ = ["write_phantoms"]
