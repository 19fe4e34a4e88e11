"""DEHB (``dehb`` 0.1.2: differential evolution inside Hyperband brackets) on the replay, through its ask/tell.

``dehb.ask()`` -> ``{"config", "fidelity", ...}``; ``dehb.tell(job, {"fitness": loss, "cost": FLOPs})``, one job
at a time, the loss being the shared scalar of ``bench.baselines.scalariser`` and the cost the FLOPs the rung
charged. Fidelities are the plan's (``min_fidelity`` 1, ``max_fidelity`` eta^top, ``eta`` = the plan's), so DEHB's
brackets run the same rungs; the configuration space is the space's categorical parameters (``ConfigSpace``,
DEHB's vector encoding). DEHB's logs and state go to a temporary folder.
"""

from __future__ import annotations

import tempfile

from dehb import DEHB

from bench.baselines import Bench, Trace
from bench.peers.common import Replay, Spent
from bench.peers.smac import config_space


def dehb(bench: Bench, seed: int) -> Trace:
    rep = Replay(bench, seed, "dehb")
    with tempfile.TemporaryDirectory() as tmp:
        opt = DEHB(
            cs=config_space(rep, seed),
            min_fidelity=1,
            max_fidelity=rep.fidelities[-1],
            eta=rep.eta,
            n_workers=1,
            seed=seed,
            output_path=tmp,
            log_level="ERROR",
            save_freq=None,
        )
        try:
            while not rep.finished:
                job = opt.ask()
                before = rep.runner.spent
                loss = rep.evaluate(dict(job["config"]), job["fidelity"])
                opt.tell(job, {"fitness": loss, "cost": rep.runner.spent - before})
        except Spent:
            pass
    return rep.trace
