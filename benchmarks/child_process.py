"""Running one benchmark configuration in a fresh Python process, so its peak memory is its own.

The parent calls ``run_child(script, config)``; the script's ``main`` starts with
``if answer_child(args.child, measure): return``, and ``add_child_argument`` declares the flag.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def run_child(script: str, config: dict, cwd: Path | None = None) -> dict:
    """``python script --child <config as JSON>`` -> the JSON object on its last output line."""
    out = subprocess.run([sys.executable, script, "--child", json.dumps(config)], capture_output=True, text=True,
                         cwd=cwd)
    if out.returncode:
        raise RuntimeError(f"benchmark {config} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def add_child_argument(parser) -> None:
    """The hidden ``--child CONFIG_JSON`` flag that ``run_child`` passes."""
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)


def answer_child(child: str | None, measure) -> bool:
    """In a child process, print ``measure(config)`` as the JSON line ``run_child`` reads; False in the parent."""
    if child is None:
        return False
    print(json.dumps(measure(json.loads(child))))
    return True
