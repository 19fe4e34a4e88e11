"""`SearchSpace`: choices over `UNetSpec` fields, sampled through an Optuna trial.

A member has one of the ``channel_mult`` choices (so the number of levels varies); level i of every member draws
from ``levels[i]``. A transformer depth of 0 means "no attention at this level", so "no attention at level 1" is
simply ``levels[0].transformer_depth: [0]``; a self-attention level has depth 1. The mid block follows the last
level when that level has cross-attention (diffusers ties them) and draws from ``mid_depth`` otherwise (0: none).
Each level is one categorical Optuna parameter (``level_i`` = "kind-depth") so value spaces never change.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from unetnas.spec import UNetSpec

Kind = Literal["self", "cross"]


class LevelChoices(BaseModel):
    """Choices for one level."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    transformer_depth: list[int] = Field([0], min_length=1, description="TD choices; 0 = no attention")
    attention: list[Kind] = Field(["cross"], min_length=1, description="attention kind where TD > 0")
    layers_per_block: list[int] = Field([2], min_length=1, description="res blocks (untied spaces only)")

    def options(self) -> list[tuple[str, int]]:
        """(attention, depth) pairs this level can take (self-attention levels have depth 1)."""
        out = [("none", 0)] if 0 in self.transformer_depth else []
        out += [(k, d) for d in self.transformer_depth if d > 0 for k in self.attention if k == "cross" or d == 1]
        return out


class SearchSpace(BaseModel):
    """A design space: fixed fields in ``base``, choices for the rest, optional cost constraints."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(..., description="space name")
    base: dict[str, Any] = Field(default_factory=dict, description="UNetSpec fields shared by every member")
    base_channels: list[int] = Field(..., min_length=1, description="C choices")
    channel_mult: list[tuple[int, ...]] = Field(..., min_length=1, description="multiplier lists (levels follow)")
    levels: list[LevelChoices] = Field(..., min_length=1, description="per-level choices, level 0 first")
    tie_layers_per_block: bool = Field(True, description="one res-block count for all levels (from levels[0])")
    mid_depth: list[int] = Field([1], min_length=1, description="mid TD when the last level has no cross-attention")
    max_gmacs: float | None = Field(None, gt=0, description="constraint: inference GMACs at most this")
    max_params: float | None = Field(None, gt=0, description="constraint: parameters at most this")

    @model_validator(mode="after")
    def _check(self) -> "SearchSpace":
        n = max(len(m) for m in self.channel_mult)
        if len(self.levels) < n:
            raise ValueError(f"levels: has {len(self.levels)} entries but channel_mult needs {n}")
        bad = set(self.base) & {"base_channels", "channel_mult", "layers_per_block", "attention",
                                "transformer_depth", "mid_attention", "mid_depth"}  # fmt: skip
        if not all(lv.options() for lv in self.levels):
            raise ValueError("levels: a level has no option (self-attention needs transformer_depth 1)")
        if bad:
            raise ValueError(f"base: {sorted(bad)} are searched fields; give their choices at the top level")
        try:  # every width and head must be buildable: check the extreme members now, not mid-search
            for c, mult in itertools.product(self.base_channels, self.channel_mult):
                self._spec(c, mult, self._first_options(len(mult)))
        except ValidationError as err:
            first = err.errors()[0]
            msg = first["msg"].removeprefix("Value error, ")
            raise ValueError(f"base_channels={c} with channel_mult={list(mult)}: {msg}") from None
        return self

    def _first_options(self, n: int) -> dict[str, Any]:
        opts = [max(self.levels[i].options(), key=lambda o: o[1]) for i in range(n)]
        return {"levels": opts, "lpb": [self.levels[i].layers_per_block[0] for i in range(n)],
                "mid": self._mid_options()[-1]}  # fmt: skip

    def _spec(self, c: int, mult: tuple[int, ...], pick: dict[str, Any]) -> UNetSpec:
        attn = [a for a, _ in pick["levels"]]
        depth = [d for _, d in pick["levels"]]
        mid_attn, mid_depth = (attn[-1], depth[-1]) if attn[-1] == "cross" else pick["mid"]
        return UNetSpec.model_validate({
            **self.base, "base_channels": c, "channel_mult": mult, "layers_per_block": tuple(pick["lpb"]),
            "attention": tuple(attn), "transformer_depth": tuple(depth),
            "mid_attention": mid_attn, "mid_depth": mid_depth,
        })  # fmt: skip

    def _mid_options(self) -> list[tuple[str, int]]:
        return [("cross", d) if d else ("none", 0) for d in sorted(set(self.mid_depth))]

    # -- sampling ---------------------------------------------------------------------------------------------
    def suggest(self, trial: Any) -> UNetSpec:
        """Draw a member through an Optuna trial (any sampler); parameter names are stable across members."""
        c = trial.suggest_categorical("base_channels", self.base_channels)
        mults = {"-".join(map(str, m)): m for m in self.channel_mult}
        mult = mults[trial.suggest_categorical("channel_mult", list(mults))]
        n = len(mult)
        levels = []
        for i in range(n):
            opts = {f"{k}-{d}": (k, d) for k, d in self.levels[i].options()}
            levels.append(opts[self._cat(trial, f"level_{i}", list(opts))])
        if self.tie_layers_per_block:
            k = self._cat(trial, "layers_per_block", self.levels[0].layers_per_block)
            lpb = [k] * n
        else:
            lpb = [self._cat(trial, f"layers_{i}", self.levels[i].layers_per_block) for i in range(n)]
        mid = ("none", 0)
        if levels[-1][0] != "cross":
            opts = {f"{k}-{d}": (k, d) for k, d in self._mid_options()}
            mid = opts[self._cat(trial, "mid", list(opts))]
        return self._spec(c, mult, {"levels": levels, "lpb": lpb, "mid": mid})

    @staticmethod
    def _cat(trial: Any, name: str, choices: list[Any]) -> Any:
        return trial.suggest_categorical(name, choices) if len(choices) > 1 else choices[0]

    def sample(self, n: int, seed: int = 0) -> list[UNetSpec]:
        """``n`` random members, drawn through Optuna's RandomSampler (the search's own code path)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        return [self.suggest(study.ask()) for _ in range(n)]

    # -- enumeration ------------------------------------------------------------------------------------------
    def _per_mult(self, mult: tuple[int, ...]) -> Iterator[dict[str, Any]]:
        n = len(mult)
        level_opts = [self.levels[i].options() for i in range(n)]
        lpb_opts = (
            [[k] * n for k in self.levels[0].layers_per_block]
            if self.tie_layers_per_block
            else [list(p) for p in itertools.product(*(self.levels[i].layers_per_block for i in range(n)))]
        )
        for levels in itertools.product(*level_opts):
            mids = self._mid_options() if levels[-1][0] != "cross" else [("none", 0)]
            for lpb, mid in itertools.product(lpb_opts, mids):
                yield {"levels": list(levels), "lpb": lpb, "mid": mid}

    def size(self) -> int:
        """Number of distinct members (without enumerating them)."""
        total = 0
        for mult in self.channel_mult:
            n = len(mult)
            lpb = (len(self.levels[0].layers_per_block) if self.tie_layers_per_block
                   else math.prod(len(self.levels[i].layers_per_block) for i in range(n)))  # fmt: skip
            head = math.prod(len(self.levels[i].options()) for i in range(n - 1))
            last = self.levels[n - 1].options()
            tail = sum(len(self._mid_options()) if a != "cross" else 1 for a, _ in last)
            total += head * tail * lpb
        return total * len(self.base_channels)

    def enumerate(self, limit: int = 100_000) -> Iterator[UNetSpec]:
        """Every member (for small spaces); refuses spaces larger than ``limit``."""
        if self.size() > limit:
            raise ValueError(f"space {self.name!r} has {self.size()} members; enumerate at most {limit}")
        for c, mult in itertools.product(self.base_channels, self.channel_mult):
            for pick in self._per_mult(mult):
                yield self._spec(c, mult, pick)

    def contains(self, spec: UNetSpec) -> bool:
        """Whether a spec is a member (e.g. a preset or a diffusers config brought back into the space)."""
        if spec.base_channels not in self.base_channels or spec.channel_mult not in self.channel_mult:
            return False
        fixed = UNetSpec.model_validate({**spec.model_dump(), **self.base})
        if fixed.model_dump(exclude={"name"}) != spec.model_dump(exclude={"name"}):
            return False
        return any(m.model_dump(exclude={"name"}) == spec.model_dump(exclude={"name"})
                   for m in self._members_like(spec))  # fmt: skip

    def _members_like(self, spec: UNetSpec) -> Iterator[UNetSpec]:
        for pick in self._per_mult(spec.channel_mult):
            yield self._spec(spec.base_channels, spec.channel_mult, pick)

    def params_of(self, spec: UNetSpec) -> dict[str, Any]:
        """The Optuna parameters ``suggest`` draws to produce ``spec`` (to enqueue presets); spec must be a member."""
        p: dict[str, Any] = {"base_channels": spec.base_channels, "channel_mult": "-".join(map(str, spec.channel_mult))}
        for i, (kind, d) in enumerate(zip(spec.attention, spec.transformer_depth)):
            if len(self.levels[i].options()) > 1:
                p[f"level_{i}"] = f"{kind}-{d}"
        if self.tie_layers_per_block:
            if len(self.levels[0].layers_per_block) > 1:
                p["layers_per_block"] = spec.layers_per_block[0]
        else:
            p.update({f"layers_{i}": k for i, k in enumerate(spec.layers_per_block)
                      if len(self.levels[i].layers_per_block) > 1})  # fmt: skip
        if spec.attention[-1] != "cross" and len(self._mid_options()) > 1:
            p["mid"] = f"{spec.mid_attention}-{spec.mid_depth}"
        return p

    def feasible(self, spec: UNetSpec) -> str | None:
        """None if the spec meets the space's constraints, else the rule it breaks."""
        from unetnas.cost import cost

        c = cost(spec)
        if self.max_gmacs is not None and c.gmacs > self.max_gmacs:
            return f"gmacs {c.gmacs:.3g} > max_gmacs {self.max_gmacs:.3g}"
        if self.max_params is not None and c.params > self.max_params:
            return f"params {c.params:.3g} > max_params {self.max_params:.3g}"
        return None
