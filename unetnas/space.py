"""`SearchSpace`: choices over `UNetSpec` fields, sampled through an Optuna trial.

A member has one of the ``channel_mult`` choices (so the number of levels varies); level i of every member draws
from ``levels[i]``. A transformer depth of 0 means "no attention at this level", so "no attention at level 1" is
simply ``levels[0].transformer_depth: [0]``; a self-attention level has depth 1. The mid block follows the last
level when that level has cross-attention (diffusers ties them) and draws from ``mid_depth`` otherwise (0: none).
Each level is one categorical Optuna parameter (``level_i`` = "kind-depth") so value spaces never change.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from unetnas.heads import head_problem, layout
from unetnas.spec import UNetSpec

Kind = Literal["self", "cross"]


Depth = Annotated[int, Field(ge=0, le=256)]  # UNetSpec's bounds on a transformer depth
ResBlocks = Annotated[int, Field(ge=1, le=64)]  # UNetSpec's bounds on res blocks per level
TEXT_BLIND = "text-blind"
HEADS = "heads"
RULES = {
    TEXT_BLIND: "no cross-attention level and no cross-attention mid block (set allow_text_blind: true to keep)",
    HEADS: "diffusers cannot give every attention block head_dim-sized heads (unetnas.heads)",
}
"""Rules that remove members from every space: name -> what the removed members are."""


class LevelChoices(BaseModel):
    """Choices for one level."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    transformer_depth: list[Depth] = Field([0], min_length=1, description="TD choices; 0 = no attention")
    attention: list[Kind] = Field(["cross"], min_length=1, description="attention kind where TD > 0")
    layers_per_block: list[ResBlocks] = Field([2], min_length=1, description="res blocks (untied spaces only)")

    def options(self) -> list[tuple[str, int]]:
        """(attention, depth) pairs this level can take (self-attention levels have depth 1)."""
        out = [("none", 0)] if 0 in self.transformer_depth else []
        out += [
            (k, d)
            for d in dict.fromkeys(self.transformer_depth)
            if d > 0
            for k in dict.fromkeys(self.attention)
            if k == "cross" or d == 1
        ]
        return out


class SearchSpace(BaseModel):
    """A design space: fixed fields in ``base``, choices for the rest, optional cost constraints.

    Members are the combinations of choices that pass the rules in ``RULES``: a text-to-image UNet cross-attends to
    the text somewhere (unless ``allow_text_blind``), and diffusers must be able to give every block the spec's heads.
    ``size``/``enumerate``/``contains``/``sample`` see members only; ``suggest`` can draw any combination (Optuna's
    parameters are independent), and ``feasible`` names the rule a draw breaks, so the search never trains it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(..., description="space name")
    base: dict[str, Any] = Field(default_factory=dict, description="UNetSpec fields shared by every member")
    base_channels: list[int] = Field(..., min_length=1, description="C choices")
    channel_mult: list[tuple[int, ...]] = Field(..., min_length=1, description="multiplier lists (levels follow)")
    levels: list[LevelChoices] = Field(..., min_length=1, description="per-level choices, level 0 first")
    tie_layers_per_block: bool = Field(True, description="one res-block count for all levels (from levels[0])")
    mid_depth: list[Depth] = Field([1], min_length=1, description="mid TD when the last level has no cross-attention")
    allow_text_blind: bool = Field(False, description="keep members without any cross-attention (not text-to-image)")
    max_gmacs: float | None = Field(None, gt=0, description="constraint: inference GMACs at most this")
    max_params: float | None = Field(None, gt=0, description="constraint: parameters at most this")
    _cache: dict = PrivateAttr(default_factory=dict)  # member combinations per (C, mult), keyed by the choices

    @field_validator("base")
    @classmethod
    def _base_types(cls, base: dict[str, Any]) -> dict[str, Any]:
        """Each fixed field has its UNetSpec type, strictly (``text_len: true`` or ``32.0`` is not an integer)."""
        for key, value in base.items():
            field = UNetSpec.model_fields.get(key)
            if field is None:
                continue  # an unknown field is named when the first member is built (UNetSpec forbids extras)
            try:
                TypeAdapter(field.annotation).validate_python(value, strict=True)
            except ValidationError as err:
                raise ValueError(f"{key}={value!r}: {err.errors()[0]['msg']}") from None
        return base

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        n = max(len(m) for m in self.channel_mult)
        if len(self.levels) < n:
            raise ValueError(f"levels: has {len(self.levels)} entries but channel_mult needs {n}")
        bad = set(self.base) & {
            "base_channels",
            "channel_mult",
            "layers_per_block",
            "attention",
            "transformer_depth",
            "mid_attention",
            "mid_depth",
        }
        if not all(lv.options() for lv in self.levels):
            raise ValueError("levels: a level has no option (self-attention needs transformer_depth 1)")
        if bad:
            raise ValueError(f"base: {sorted(bad)} are searched fields; give their choices at the top level")
        for c, mult in itertools.product(self.base_channels, self.channel_mult):
            self._check_options(c, mult)
        self._check_members()
        return self

    def _check_options(self, c: int, mult: tuple[int, ...]) -> None:
        """Every choice builds on its own: each option of each level (and of the mid block) is validated as a spec
        with no attention elsewhere, so a bad option is named before any member is drawn."""
        n = len(mult)
        none = [("none", 0)] * n
        quiet = ("cross", 1) if self._fixed("family") == "if" else ("none", 0)  # IF mid blocks always attend
        cases = [("", none, quiet)]
        cases += [
            (
                f"levels.{i}: option {k}-{d}",
                none[:i] + [(k, d)] + none[i + 1 :],
                (k, d) if i == n - 1 and k == "cross" else quiet,
            )
            for i in range(n)
            for k, d in self.levels[i].options()
        ]
        cases += [(f"mid_depth: option {d}", none, m) for d, m in zip(sorted(set(self.mid_depth)), self._mid_options())]
        lpb = [self.levels[i].layers_per_block[0] for i in range(n)]
        for where, levels, mid in cases:
            try:
                self._spec(c, mult, {"levels": levels, "lpb": lpb, "mid": mid}, tie=False)
            except ValidationError as err:
                msg = err.errors()[0]["msg"].removeprefix("Value error, ")
                where = f"{where} with " if where else ""
                raise ValueError(f"{where}base_channels={c}, channel_mult={list(mult)}: {msg}") from None

    def _check_members(self) -> None:
        """Every option is in some member diffusers can build; the space has a member."""
        used: set[tuple[str, Any]] = set()
        first_reason: dict[tuple[str, Any], str] = {}
        for (c, mult), (_, _, reasons, buildable) in self._combos().items():
            used |= buildable
            for key, why in reasons.items():
                first_reason.setdefault(key, f"{why} (e.g. base_channels={c}, channel_mult={list(mult)})")
        for i, lv in enumerate(self.levels):
            for o in lv.options():
                key = ("level", (i, o))
                if key in first_reason and key not in used:
                    raise ValueError(
                        f"levels.{i}: option {o[0]}-{o[1]} is in no member diffusers can build: {first_reason[key]}"
                    )
        for m in self._mid_options():
            if ("mid", m) in first_reason and ("mid", m) not in used:
                raise ValueError(
                    f"mid_depth: option {m[1]} is in no member diffusers can build: {first_reason['mid', m]}"
                )
        if self.size() == 0:
            raise ValueError(
                "the space has no member: every combination is text-blind (no cross-attention); "
                "add a cross-attention option, or set allow_text_blind: true"
            )

    def _fixed(self, name: str) -> Any:
        """A fixed UNetSpec field: from ``base``, else UNetSpec's default."""
        return self.base.get(name, UNetSpec.model_fields[name].default)

    def _spec(self, c: int, mult: tuple[int, ...], pick: dict[str, Any], tie: bool = True) -> UNetSpec:
        attn = [a for a, _ in pick["levels"]]
        depth = [d for _, d in pick["levels"]]
        mid_attn, mid_depth = (attn[-1], depth[-1]) if attn[-1] == "cross" and tie else pick["mid"]
        return UNetSpec.model_validate(
            {
                **self.base,
                "base_channels": c,
                "channel_mult": mult,
                "layers_per_block": tuple(pick["lpb"]),
                "attention": tuple(attn),
                "transformer_depth": tuple(depth),
                "mid_attention": mid_attn,
                "mid_depth": mid_depth,
            }
        )

    def _mid_options(self) -> list[tuple[str, int]]:
        return [("cross", d) if d else ("none", 0) for d in sorted(set(self.mid_depth))]

    # -- rules ------------------------------------------------------------------------------------------------
    def rule_broken(self, spec: UNetSpec) -> str | None:
        """The rule (of ``RULES``) that keeps ``spec`` out of the space, as one line; None if it breaks none."""
        if not self.allow_text_blind and "cross" not in spec.attention and spec.mid_attention != "cross":
            return f"{TEXT_BLIND}: {RULES[TEXT_BLIND]}"
        why = head_problem(spec)
        return None if why is None else f"{HEADS}: {why}"

    def _combos(self) -> dict[tuple[int, tuple[int, ...]], tuple[list, dict[str, int], dict, set]]:
        """Per (C, mult): the level combinations kept, each with its kept mid options; how many (levels, mid)
        combinations each rule removed; per option, why the first combination holding it that diffusers cannot
        build fails; and the options in some combination it can build (text-blind or not).
        Computed once per set of choices (plain values, no spec validation)."""
        key = self.model_dump_json(
            include={"base", "base_channels", "channel_mult", "levels", "mid_depth", "allow_text_blind"}
        )
        if key not in self._cache:
            fam, h = self._fixed("family"), self._fixed("head_dim")
            out = {}
            for c, mult in itertools.product(self.base_channels, self.channel_mult):
                widths, kept, removed = [c * m for m in mult], [], {TEXT_BLIND: 0, HEADS: 0}
                reasons, buildable = {}, set()
                for levels in itertools.product(*(self.levels[i].options() for i in range(len(mult)))):
                    mids = [levels[-1]] if levels[-1][0] == "cross" else self._mid_options()
                    ok = []
                    for mid in mids:
                        attn = [a for a, _ in levels]
                        try:
                            layout(fam, attn, mid[0], widths, h)
                        except ValueError as err:
                            removed[HEADS] += 1
                            for i, o in enumerate(levels):
                                reasons.setdefault(("level", (i, o)), str(err))
                            if levels[-1][0] != "cross":
                                reasons.setdefault(("mid", mid), str(err))
                            continue
                        buildable.update(("level", (i, o)) for i, o in enumerate(levels))
                        if levels[-1][0] != "cross":
                            buildable.add(("mid", mid))
                        if not self.allow_text_blind and "cross" not in attn and mid[0] != "cross":
                            removed[TEXT_BLIND] += 1
                            continue
                        ok.append(mid)
                    if ok:
                        kept.append((levels, ok))
                out[c, mult] = (kept, removed, reasons, buildable)
            self._cache[key] = out
        return self._cache[key]

    def _lpb_options(self, n: int) -> list[list[int]]:
        if self.tie_layers_per_block:
            return [[k] * n for k in self.levels[0].layers_per_block]
        return [list(p) for p in itertools.product(*(self.levels[i].layers_per_block for i in range(n)))]

    def removed(self) -> dict[str, int]:
        """How many combinations of choices each rule of ``RULES`` removes (members = combinations - removed)."""
        total = {TEXT_BLIND: 0, HEADS: 0}
        for (_, mult), (_, removed, _, _) in self._combos().items():
            for rule, k in removed.items():
                total[rule] += k * len(self._lpb_options(len(mult)))
        return total

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
        """``n`` random members, drawn through Optuna's RandomSampler (the search's own code path); draws that break
        a rule of ``RULES`` are skipped, as the search skips them."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        out: list[UNetSpec] = []
        for _ in range(1000 * n + 1000):  # a space has a member (checked at load), so this ends in practice
            if len(out) == n:
                return out
            spec = self.suggest(study.ask())
            if self.rule_broken(spec) is None:
                out.append(spec)
        raise ValueError(
            f"space {self.name!r}: drew {1000 * n + 1000} combinations and found {len(out)} of {n} members"
        )

    # -- enumeration ------------------------------------------------------------------------------------------
    def _per_mult(self, c: int, mult: tuple[int, ...]) -> Iterator[dict[str, Any]]:
        lpb_opts = self._lpb_options(len(mult))
        for levels, mids in self._combos()[c, mult][0]:
            for lpb, mid in itertools.product(lpb_opts, mids):
                yield {"levels": list(levels), "lpb": lpb, "mid": mid}

    def size(self) -> int:
        """Number of members (combinations of choices that pass the rules), counted without building specs."""
        return sum(
            sum(len(mids) for _, mids in kept) * len(self._lpb_options(len(mult)))
            for (_, mult), (kept, _, _, _) in self._combos().items()
        )

    def enumerate(self, limit: int = 100_000) -> Iterator[UNetSpec]:
        """Every member (for small spaces); refuses spaces larger than ``limit``."""
        if self.size() > limit:
            raise ValueError(f"space {self.name!r} has {self.size()} members; enumerate at most {limit}")
        for c, mult in itertools.product(self.base_channels, self.channel_mult):
            for pick in self._per_mult(c, mult):
                yield self._spec(c, mult, pick)

    def contains(self, spec: UNetSpec) -> bool:
        """Whether a spec is a member (e.g. a preset or a diffusers config brought back into the space)."""
        if spec.base_channels not in self.base_channels or spec.channel_mult not in self.channel_mult:
            return False
        fixed = UNetSpec.model_validate({**spec.model_dump(), **self.base})
        if fixed.model_dump(exclude={"name"}) != spec.model_dump(exclude={"name"}):
            return False
        return any(
            m.model_dump(exclude={"name"}) == spec.model_dump(exclude={"name"}) for m in self._members_like(spec)
        )

    def _members_like(self, spec: UNetSpec) -> Iterator[UNetSpec]:
        for pick in self._per_mult(spec.base_channels, spec.channel_mult):
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
            p.update(
                {
                    f"layers_{i}": k
                    for i, k in enumerate(spec.layers_per_block)
                    if len(self.levels[i].layers_per_block) > 1
                }
            )
        if spec.attention[-1] != "cross" and len(self._mid_options()) > 1:
            p["mid"] = f"{spec.mid_attention}-{spec.mid_depth}"
        return p

    def feasible(self, spec: UNetSpec) -> str | None:
        """None if the spec is a member's design that meets the cost constraints, else the rule it breaks (one line:
        a rule of ``RULES`` first, then ``max_gmacs``/``max_params``)."""
        from unetnas.cost import cost

        why = self.rule_broken(spec)
        if why is not None:
            return why
        c = cost(spec)
        if self.max_gmacs is not None and c.gmacs > self.max_gmacs:
            return f"gmacs {c.gmacs:.3g} > max_gmacs {self.max_gmacs:.3g}"
        if self.max_params is not None and c.params > self.max_params:
            return f"params {c.params:.3g} > max_params {self.max_params:.3g}"
        return None
