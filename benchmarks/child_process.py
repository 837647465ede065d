"""Running one benchmark configuration in a fresh Python process, so its peak memory is its own."""

from __future__ import annotations

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
