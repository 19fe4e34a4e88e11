"""What every peer scheduler shares: the space as categorical hyperparameters, fidelities as rungs, one replay.

``Encoding``: the Optuna parameters ``SearchSpace.suggest`` draws (``base_channels``, ``channel_mult``,
``level_i``, ``layers_per_block``, ``mid``), each with its choices as strings; a peer's configuration (a dict of
those strings; parameters a member does not use are ignored, as Optuna's would be; single-choice parameters are
left out) maps back to a spec through the
same ``suggest``, so a peer proposes exactly what an Optuna sampler could.

``Replay``: one peer's search at one seed on ``bench.baselines.Runner`` (the ledger-equivalent accounting of every
baseline): ``evaluate(config, fidelity)`` trains the design to the rung of that fidelity (resuming from what it has;
a rung already run costs nothing and answers the same record) and returns the loss to minimise (minus the scalar of
``bench.baselines.scalariser``), or raises ``Spent`` when the budget cannot pay for the rung. A configuration that
is not a member (a rule of ``unetnas.space.RULES`` or a cost constraint) costs nothing and scores ``WORST``.
``finished`` is True once every member has its last rung, or after ``MAX_FREE_TRIALS`` proposals in a row cost
nothing (the scheduler only repeats itself).
"""

from __future__ import annotations

import math
from typing import Any

from bench.baselines import MAX_FREE_TRIALS, OBJECTIVES, Bench, Runner, Trace, _measure, scalariser
from unetnas.space import SearchSpace
from unetnas.spec import UNetSpec

WORST = 10.0  # loss of a configuration that is not a member (any measured loss is above -1.2 and below 2)


class Spent(Exception):
    """The budget cannot pay for the next rung: the search is over."""


class _Recorder:
    """An Optuna-trial stand-in that records every categorical parameter ``suggest`` asks for."""

    def __init__(self, mult: str) -> None:
        self.mult, self.params = mult, {}

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        self.params[name] = list(choices)
        if name == "channel_mult":
            return self.mult
        # a level without cross-attention, where there is one, so that ``mid`` is asked for too
        return next((c for c in choices if not str(c).startswith("cross")), choices[0])


class _Fixed:
    """An Optuna-trial stand-in answering ``suggest`` from a configuration of strings."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        if len(choices) == 1:  # not a hyperparameter (``Encoding`` leaves it out)
            return choices[0]
        return choices[[str(c) for c in choices].index(str(self.config[name]))]


class Encoding:
    """The space's parameters: ``params`` = name -> choices (strings), in ``suggest``'s order."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.params: dict[str, list[str]] = {}
        for mult in ("-".join(map(str, m)) for m in space.channel_mult):
            rec = _Recorder(mult)
            space.suggest(rec)
            for name, choices in rec.params.items():
                known = self.params.setdefault(name, [])
                known += [str(c) for c in choices if str(c) not in known]
        self.params = {k: v for k, v in self.params.items() if len(v) > 1}  # a single choice is no hyperparameter

    def spec(self, config: dict[str, Any]) -> UNetSpec:
        return self.space.suggest(_Fixed(config))


class Replay:
    """One peer's search at one seed (see the module docstring)."""

    def __init__(self, bench: Bench, seed: int, name: str) -> None:
        self.bench, self.seed = bench, seed
        self.trace = Trace(name, seed)
        self.runner = Runner(bench, seed, self.trace)
        self.encoding = Encoding(bench.space)
        self.scalar = scalariser(bench, seed)
        self.whole = {bench.table.design(m).id for m in bench.members}
        self.eta, self.top = bench.plan.eta, bench.top
        self.free = 0  # proposals in a row that cost nothing

    @property
    def fidelities(self) -> list[int]:
        """The rungs as a peer's resource levels: 1, eta, ..., eta^top."""
        return [self.eta**k for k in range(self.top + 1)]

    def rung_of(self, fidelity: float) -> int:
        """The rung whose resource level is nearest ``fidelity`` in log scale."""
        k = round(math.log(max(float(fidelity), 1.0)) / math.log(self.eta))
        return min(max(k, 0), self.top)

    def measure(self, config: dict[str, Any], fidelity: float) -> dict | None:
        """The design's record at the fidelity's rung (None: not a member); raises ``Spent``."""
        before = self.runner.spent
        spec = self.encoding.spec(config)
        if self.bench.space.feasible(spec) is not None:
            self.free += 1
            return None
        rec = self.runner.rung(spec, self.rung_of(fidelity))
        if rec is None:
            raise Spent
        self.free = self.free + 1 if self.runner.spent == before else 0
        return rec

    def evaluate(self, config: dict[str, Any], fidelity: float) -> float:
        """Loss to minimise (``WORST`` for a non-member); raises ``Spent``."""
        rec = self.measure(config, fidelity)
        return WORST if rec is None else -self.scalar(rec)

    def objectives(self, config: dict[str, Any], fidelity: float) -> dict[str, float]:
        """Both measured objectives (alignment to maximise, GMACs to minimise; ``WORST`` values for a non-member)."""
        rec = self.measure(config, fidelity)
        if rec is None:
            return {OBJECTIVES[0]: -WORST, OBJECTIVES[1]: WORST * 1e6}
        a, g = _measure(rec)
        return {OBJECTIVES[0]: a, OBJECTIVES[1]: g}

    @property
    def finished(self) -> bool:
        return self.whole <= set(self.trace.measured) or self.free >= MAX_FREE_TRIALS
