"""Today's code as a baseline: a module of the repository loaded from an older git revision, beside the current one.

``legacy_module("2294ac1", "unetnas/world/answerer.py")`` executes that file's text at that commit as a fresh
module (``legacy_<rev>_answerer``); its own imports resolve to the current package, so only the file itself is
old. The speed benches (bench/bench_trial.py, bench/bench_scoring.py) compare the current trainer and scorer
with the ones of the commit before the CPU-speed work (``BASELINE_REV``), in the same process and run.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE_REV = "2294ac1"  # main before issue 16 (trainer, sampler and judge as the ground truth v1 ran them)


def legacy_module(rev: str, path: str) -> types.ModuleType:
    """The module ``path`` (repository-relative .py) as it was at git revision ``rev``."""
    name = f"legacy_{rev}_{Path(path).stem}"
    if name in sys.modules:
        return sys.modules[name]
    try:
        src = subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"error: {path} at revision {rev} is not readable from git ({e})") from None
    mod = types.ModuleType(name)
    mod.__file__ = f"{rev}:{path}"
    sys.modules[name] = mod  # dataclasses look their module up while the file executes
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)
    return mod
