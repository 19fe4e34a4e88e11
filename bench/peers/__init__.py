"""The peers' own schedulers on the replayed ground truth, each through its package (one module per package).

Every peer sees the same search as the built-in baselines (``bench.baselines``): the space's Optuna parameters as
categorical hyperparameters (``bench.peers.common.Encoding``), fidelities 1, eta, ..., eta^top mapped to the plan's
rungs, the same ``Runner`` on the same ``ReplayExecutor`` (same seed, so the same held-out run is read), the same
FLOPs accounting (training resumes from a design's last rung, nothing is paid twice; evaluation per rung as the plan
charges it; the study's one-off caption encoding excluded for every method) and the same budget. Single-objective
peers optimise the scalar of Optuna's Hyperband baseline (alignment - lambda x GMACs / max GMACs, lambda drawn per
seed, shared by all at a seed); MOASHA gets the two objectives. The packages are an optional extra
(``pip install -e '.[peers]'``, in their own venv: ``scripts/setup_peers.sh``).

``PEERS``: method name -> (module, function, package to import, pip name, label).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from unetnas.errors import UserError

PEERS: dict[str, tuple[str, str, str, str, str]] = {
    "moasha": ("bench.peers.syne_tune", "moasha", "syne_tune", "syne-tune", "Syne Tune MOASHA (2 objectives)"),
    "asha": ("bench.peers.syne_tune", "asha", "syne_tune", "syne-tune", "Syne Tune ASHA, scalarised"),
    "bohb": ("bench.peers.syne_tune", "bohb", "syne_tune", "syne-tune", "Syne Tune BOHB, scalarised"),
    "smac": ("bench.peers.smac", "smac_hyperband", "smac", "smac", "SMAC3 multi-fidelity (Hyperband), scalarised"),
    "dehb": ("bench.peers.dehb", "dehb", "dehb", "dehb", "DEHB, scalarised"),
}
LABELS = {
    "unetnas": "unetnas (Hyperband + MO-ASHA + TPE)",
    "random": "random search, full horizon",
    "tpe": "TPE, full horizon",
    "topk": "top-k after rung 0 (oracle k)",
    "hyperband": "Optuna HyperbandPruner + TPE, scalarised",
} | {k: v[4] for k, v in PEERS.items()}


def label(name: str) -> str:
    return LABELS.get(name, name)


def available(name: str) -> bool:
    """Whether the peer's package imports here."""
    try:
        importlib.import_module(PEERS[name][2])
    except ImportError:
        return False
    return True


def method(name: str) -> Callable[[Any, int], Any]:
    """The method ``name`` (built-in or peer) as ``f(bench, seed) -> Trace``; a peer whose package is missing is
    one ``UserError`` line saying how to install it."""
    from bench.baselines import METHODS

    if name in METHODS:
        return METHODS[name]
    module, func, pkg, pip_name, _ = PEERS[name]
    if not available(name):
        raise UserError(
            f"needs the package {pip_name} (scripts/setup_peers.sh makes .venv-peers; run with .venv-peers/bin/python)",
            field="--methods",
            value=name,
        )
    return getattr(importlib.import_module(module), func)
