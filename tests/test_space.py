"""SearchSpace: YAML round trip, counting, enumeration, sampling, membership and validation."""

from __future__ import annotations

import collections
import itertools

import optuna
import pytest
import yaml
from pydantic import ValidationError

from unetnas.errors import UserError
from unetnas.io import load_space, save_model
from unetnas.presets import PRESETS
from unetnas.space import RULES, SearchSpace

SPACE_FILES = ["space/paper.yaml", "space/tiny.yaml"]


def _key(spec) -> str:
    return spec.model_dump_json(exclude={"name"})


@pytest.fixture(scope="module")
def paper() -> SearchSpace:
    return load_space("space/paper.yaml")


# The CPU space as issue 11 found it (space/tiny.yaml then: 32x32 pixels, head_dim 16, two or three levels); kept
# here so the hand counts below do not follow later edits of the file (the file itself is in SPACE_FILES).
TINY_V1 = {
    "name": "tiny",
    "base": {
        "cross_attention_dim": 384,
        "text_len": 32,
        "latent_channels": 3,
        "latent_size": 32,
        "vae_downsample": 1,
        "head_dim": 16,
        "norm_num_groups": 8,
    },
    "base_channels": [16, 24, 32],
    "channel_mult": [[1, 2], [1, 2, 2]],
    "levels": [
        {"transformer_depth": [0], "layers_per_block": [1]},
        {"transformer_depth": [0, 1, 2], "attention": ["self", "cross"]},
        {"transformer_depth": [0, 1, 2], "attention": ["cross"]},
    ],
    "mid_depth": [0, 1],
}


@pytest.fixture(scope="module")
def tiny() -> SearchSpace:
    return SearchSpace.model_validate(TINY_V1)


@pytest.mark.parametrize("path", SPACE_FILES)
def test_space_yaml_round_trip_is_lossless(path, tmp_path):
    space = load_space(path)
    out = save_model(space, tmp_path / "space.yaml")
    back = load_space(out)
    assert back == space
    assert back.model_dump() == space.model_dump()
    assert [_key(s) for s in back.sample(20, seed=1)] == [_key(s) for s in space.sample(20, seed=1)]


# Handcrafted spaces whose sizes are counted by hand in the comment (tiny's base: head_dim 16). Two rules remove
# combinations of choices: "text-blind" (no cross-attention level and no cross-attention mid block) and "heads"
# (diffusers cannot give every block 16-channel heads: a self-attention level L facing a transformer level n-1-L,
# or a self-attention last level under a cross-attention mid block).
HANDCRAFTED = {
    # 2 C x mult [1,2]: level0 {none} x level1 {none->mid{none (text-blind), cross1}, cross1, cross2} = 3 -> 6
    "two-level": (
        {
            "base_channels": [16, 32],
            "channel_mult": [[1, 2]],
            "levels": [{"transformer_depth": [0]}, {"transformer_depth": [0, 1, 2]}],
            "mid_depth": [0, 1],
        },
        6,
        {"text-blind": 2, "heads": 0},
    ),
    # 1 C, two mults; untied res blocks; self-attention levels have depth 1 (so "self" at TD 2 is no option);
    # the mid block is free (none or cross 2; the repeated 0 counts once) when the last level is not cross.
    # [1,2]:   lpb 2x1=2 ; level0 {none, self1 (heads: faces cross1), cross1} ; level1 {cross1}     -> 2*2     = 4
    # [1,2,2]: lpb 2x1x2=4 ; level1 {cross1}; level0 none/cross1 x level2 {none->mid{none,cross2}, cross2} = 6,
    #          level0 self1 only with level2 none and mid none (its up block reads level 2's entry) = 1 -> 4*7 = 28
    "untied": (
        {
            "base_channels": [32],
            "channel_mult": [[1, 2], [1, 2, 2]],
            "tie_layers_per_block": False,
            "levels": [
                {"transformer_depth": [0, 1], "attention": ["self", "cross"], "layers_per_block": [1, 2]},
                {"transformer_depth": [1]},
                {"transformer_depth": [0, 2], "attention": ["self", "cross"], "layers_per_block": [1, 2]},
            ],
            "mid_depth": [0, 2, 0],
        },
        32,
        {"text-blind": 0, "heads": 2 + 8},
    ),
    # a self-attention last level frees the mid block, but only "none" builds under it, and that is text-blind:
    # 2 C x level1 {none->mid{none (text-blind), cross1}, self1->mid{none (text-blind), cross1 (heads)}, cross1} = 2
    "self-last": (
        {
            "base_channels": [16, 32],
            "channel_mult": [[1, 2]],
            "levels": [{"transformer_depth": [0]}, {"transformer_depth": [0, 1], "attention": ["self", "cross"]}],
            "mid_depth": [0, 1],
        },
        4,
        {"text-blind": 4, "heads": 2},
    ),
    # a single member
    "point": (
        {
            "base_channels": [32],
            "channel_mult": [[1, 2, 2]],
            "levels": [
                {"transformer_depth": [0], "layers_per_block": [1]},
                {"transformer_depth": [1]},
                {"transformer_depth": [1]},
            ],
        },
        1,
        {"text-blind": 0, "heads": 0},
    ),
}


def _handcrafted(name: str, **changes) -> SearchSpace:
    fields = {**HANDCRAFTED[name][0], **changes}
    base = {
        k: v
        for k, v in PRESETS["tiny"].model_dump().items()
        if k
        in (
            "cross_attention_dim",
            "text_len",
            "latent_channels",
            "latent_size",
            "vae_downsample",
            "head_dim",
            "norm_num_groups",
        )
    }
    return SearchSpace.model_validate({"name": name, "base": base, **fields})


@pytest.mark.parametrize("name", list(HANDCRAFTED))
def test_size_matches_hand_count_and_enumeration(name):
    space = _handcrafted(name)
    members = list(space.enumerate())
    assert space.size() == len(members) == HANDCRAFTED[name][1]
    assert space.removed() == HANDCRAFTED[name][2]
    assert len({_key(m) for m in members}) == len(members)  # distinct
    assert all(space.contains(m) and space.feasible(m) is None for m in members)


@pytest.mark.parametrize("path", SPACE_FILES + ["tests/data/micro.yaml"])
def test_shipped_spaces_size_equals_enumeration(path):
    space = load_space(path)
    members = list(space.enumerate(limit=10**6))
    assert space.size() == len(members) == len({_key(m) for m in members}) > 0
    assert all(space.rule_broken(m) is None for m in members)


def test_tiny_size_equals_enumeration(tiny):
    members = list(tiny.enumerate())
    assert tiny.size() == len(members) == len({_key(m) for m in members})
    # by hand: level1 {none, self1, cross1, cross2} (self has depth 1), mid {none, cross1} where level 2 is not cross
    # 3 C x ( [1,2]:   level1 last: none->2 + self1->2 + cross1 + cross2 = 6
    #        + [1,2,2]: level1 4 options x level2 {none->2, cross1, cross2} = 4 -> 16 ) = 66 combinations;
    # text-blind: per C [1,2] none/self1 with mid none, [1,2,2] none/self1 with level 2 none and mid none: 4 -> 12;
    # heads: per C [1,2] self1 under the cross mid block (its entry: 16 as head size, 2..4 as heads): 1 -> 3
    assert tiny.removed() == {"text-blind": 12, "heads": 3}
    assert tiny.size() == 66 - 15 == 51


def test_paper_size_equals_enumeration(paper):
    members = list(paper.enumerate())
    assert paper.size() == len(members) == len({_key(m) for m in members})
    # by hand, per C: [1,2,4]: 2 (lpb) x 2 (L0) x 4 (L1) x (1 x 2 mid + 7) = 144;
    # each 4-level mult: 2 x 2 x 4 x 8 x (1 x 2 mid + 1) = 384; 144 + 2 x 384 = 912; x 6 C = 5472 combinations,
    # of which text-blind (TD 0 everywhere, mid none): 2 (lpb) per mult per C = 36
    assert paper.removed() == {"text-blind": 36, "heads": 0}
    assert paper.size() == 5472 - 36


def test_enumerate_refuses_large_spaces(paper):
    with pytest.raises(ValueError, match="5436"):
        next(paper.enumerate(limit=100))


@pytest.mark.parametrize("path", SPACE_FILES)
def test_sample_is_deterministic_and_members_are_contained(path):
    space = load_space(path)
    a, b = space.sample(30, seed=7), space.sample(30, seed=7)
    assert [_key(s) for s in a] == [_key(s) for s in b]
    assert [_key(s) for s in a] != [_key(s) for s in space.sample(30, seed=8)]
    assert all(space.contains(s) for s in a)
    for s in a:
        assert s.base_channels in space.base_channels and s.channel_mult in space.channel_mult
        for i, d in enumerate(s.transformer_depth):
            assert d in space.levels[i].transformer_depth


def test_sample_covers_the_choices(paper):
    specs = paper.sample(200, seed=0)
    assert {s.base_channels for s in specs} == set(paper.base_channels)
    assert {s.channel_mult for s in specs} == set(paper.channel_mult)
    assert {s.transformer_depth[2] for s in specs} == set(paper.levels[2].transformer_depth)


def test_suggest_with_fixed_trial_gives_the_tiny_preset(tiny):
    trial = optuna.trial.FixedTrial(
        {"base_channels": 32, "channel_mult": "1-2-2", "level_1": "cross-1", "level_2": "cross-1"}
    )
    spec = tiny.suggest(trial)
    assert spec.model_dump(exclude={"name"}) == PRESETS["tiny"].model_dump(exclude={"name"})


@pytest.mark.parametrize("path", SPACE_FILES + ["handcrafted"])
def test_params_of_inverts_suggest(path):
    spaces = [_handcrafted(n) for n in HANDCRAFTED] if path == "handcrafted" else [load_space(path)]
    for space in spaces:
        members = list(space.enumerate()) if space.size() < 1000 else space.sample(300, seed=5)
        for spec in members:
            again = space.suggest(optuna.trial.FixedTrial(space.params_of(spec)))
            assert _key(again) == _key(spec)


PAPER_MEMBERS = {
    "sd2",
    "sd2-c512",
    "sdxl-c128",
    "sdxl-c192",
    "sdxl",
    "sdxl-c384",
    "sdxl-td2",
    "sdxl-td4",
    "sdxl-td12",
    "sdxl-td14",
    "sdxl-td4_4",
    "sdxl-td4_8",
    "sdxl-td4_12",
    "sdxl-c384-td4_12",
}


def test_contains_presets(paper, tiny):
    # every Table-1 variant built with SD blocks lies in the paper space; IF-XL (IF blocks), the diffusers
    # originals (other resolution / text) and tiny do not
    assert {n for n, s in PRESETS.items() if paper.contains(s)} == PAPER_MEMBERS
    assert {n for n, s in PRESETS.items() if tiny.contains(s)} == {"tiny"}


@pytest.mark.parametrize(
    "changes",
    [
        {"base_channels": 48},
        {"transformer_depth": (0, 1, 3), "mid_depth": 3},
        {"head_dim": 32},
        {"layers_per_block": (2, 2, 2)},
        {"text_len": 7},
        {"channel_mult": (1, 2, 4)},
        {"attention": ("none", "cross", "self"), "transformer_depth": (0, 1, 1)},
        {"attention": ("self", "cross", "cross"), "transformer_depth": (1, 1, 1)},
        {"attention": ("none", "cross", "none"), "transformer_depth": (0, 1, 0), "mid_depth": 2},
    ],
    ids=str,
)
def test_contains_rejects_non_members(tiny, changes):
    spec = PRESETS["tiny"].with_(**changes)
    assert not tiny.contains(spec)


def test_feasible_applies_constraints(tiny):
    from unetnas.cost import cost

    spec = PRESETS["tiny"]
    c = cost(spec)
    assert tiny.feasible(spec) is None
    capped = tiny.model_copy(update={"max_gmacs": c.gmacs / 2})
    assert "max_gmacs" in capped.feasible(spec)
    capped = tiny.model_copy(update={"max_params": c.params - 1})
    assert "max_params" in capped.feasible(spec)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"levels": [{"transformer_depth": [0]}]}, "levels"),
        ({"base": {"base_channels": 64}}, "base"),
        ({"base_channels": [20]}, "base_channels"),
        ({"base_channels": []}, "base_channels"),
        (
            {
                "levels": [
                    {"transformer_depth": [0]},
                    {"transformer_depth": [1]},
                    {"transformer_depth": [1], "attention": ["full"]},
                ]
            },
            "attention",
        ),
        (
            {
                "levels": [
                    {"transformer_depth": [0]},
                    {"transformer_depth": [2], "attention": ["self"]},
                    {"transformer_depth": [1]},
                ]
            },
            "levels",
        ),
        ({"mid_attention": ["cross"]}, "mid_attention"),
        ({"colour": "blue"}, "colour"),
    ],
    ids=[
        "too few levels",
        "searched field in base",
        "impossible width",
        "no choices",
        "bad kind",
        "self level deeper than 1",
        "mid kind is not a choice",
        "unknown field",
    ],
)
def test_space_validators_reject_and_name_the_field(tiny, changes, field):
    data = {**tiny.model_dump(), **changes}
    with pytest.raises(ValidationError) as info:
        SearchSpace.model_validate(data)
    assert field in str(info.value)


def _all_draws(space: SearchSpace) -> list[dict]:
    """Every combination of choices as the Optuna parameters ``suggest`` reads (members and removed ones)."""
    draws = []
    for c, mult in itertools.product(space.base_channels, space.channel_mult):
        n = len(mult)
        levels = itertools.product(*([f"{k}-{d}" for k, d in space.levels[i].options()] for i in range(n)))
        lpb = (
            [{"layers_per_block": k} for k in space.levels[0].layers_per_block]
            if space.tie_layers_per_block
            else [
                {f"layers_{i}": k for i, k in enumerate(p)}
                for p in itertools.product(*(space.levels[i].layers_per_block for i in range(n)))
            ]
        )
        mids = [f"{'cross' if d else 'none'}-{d}" for d in sorted(set(space.mid_depth))]
        for lv, lp in itertools.product(levels, lpb):
            for mid in mids if not lv[-1].startswith("cross") else [None]:
                draws.append(
                    {
                        "base_channels": c,
                        "channel_mult": "-".join(map(str, mult)),
                        **{f"level_{i}": o for i, o in enumerate(lv)},
                        **lp,
                        **({"mid": mid} if mid else {}),
                    }
                )
    return draws


@pytest.mark.parametrize("name", ["tiny", "tiny-v1", "micro", *HANDCRAFTED])
def test_feasible_size_enumerate_and_removed_agree_over_every_draw(name):
    # the rules are one rule: whatever suggest() can draw, feasible() keeps exactly the members enumerate() lists
    space = {
        "tiny": lambda: load_space("space/tiny.yaml"),
        "tiny-v1": lambda: SearchSpace.model_validate(TINY_V1),
        "micro": lambda: load_space("tests/data/micro.yaml"),
    }.get(name, lambda: _handcrafted(name))()
    members = {_key(m) for m in space.enumerate()}
    broken = collections.Counter()
    kept = set()
    draws = _all_draws(space)
    for params in draws:
        spec = space.suggest(optuna.trial.FixedTrial(params))  # every draw is a valid spec: only rules remove it
        why = space.feasible(spec)
        if why is None:
            kept.add(_key(spec))
        else:
            rule = why.split(":")[0]
            assert rule in RULES and "\n" not in why
            broken[rule] += 1
            assert not space.contains(spec)
    assert kept == members and len(members) == space.size() == len(draws) - sum(broken.values())
    assert {r: broken[r] for r in RULES} == space.removed()


def test_text_blind_members_are_removed_unless_allowed(tiny):
    blind = PRESETS["tiny"].with_(
        attention=("none", "self", "none"), transformer_depth=(0, 1, 0), mid_attention="none", mid_depth=0
    )
    assert tiny.feasible(blind).startswith("text-blind: no cross-attention level and no cross-attention mid block")
    assert not tiny.contains(blind)
    assert all("cross" in s.attention or s.mid_attention == "cross" for s in tiny.sample(200, seed=3))
    allowed = SearchSpace.model_validate({**tiny.model_dump(), "allow_text_blind": True})
    assert allowed.feasible(blind) is None and allowed.contains(blind)
    assert allowed.size() == tiny.size() + 12 and allowed.removed() == {"text-blind": 0, "heads": 3}
    # the Optuna parameters do not depend on the rule: a study can switch it without changing its distributions
    params = {"base_channels": 32, "channel_mult": "1-2-2", "level_1": "self-1", "level_2": "none-0", "mid": "none-0"}
    assert _key(tiny.suggest(optuna.trial.FixedTrial(params))) == _key(blind)
    assert allowed.params_of(blind) == params


def test_a_space_of_text_blind_members_only_needs_the_explicit_switch(tiny):
    data = {**tiny.model_dump(), "levels": [{"transformer_depth": [0], "layers_per_block": [1]}] * 3, "mid_depth": [0]}
    with pytest.raises(ValidationError, match="no member: every combination is text-blind"):
        SearchSpace.model_validate(data)
    assert SearchSpace.model_validate({**data, "allow_text_blind": True}).size() == 6


def test_head_conflicts_are_removed_and_named(tiny):
    # issue 11 item 4 (a member of tiny v1): attention [none, self] under a cross mid block, head_dim 16: diffusers
    # would build the mid block with 16 heads of 2 channels (it reads attention_head_dim[1] as heads there, as head
    # size in level 1)
    spec = PRESETS["tiny"].with_(
        base_channels=16,
        channel_mult=(1, 2),
        layers_per_block=(1, 1),
        attention=("none", "self"),
        transformer_depth=(0, 1),
        mid_attention="cross",
        mid_depth=1,
    )
    why = tiny.feasible(spec)
    assert why.startswith("heads: attention=['none', 'self']: diffusers cannot give every block 16-channel heads")
    assert "mid block as heads (2)" in why and not tiny.contains(spec)
    assert spec.model_dump(exclude={"name"}) not in [m.model_dump(exclude={"name"}) for m in tiny.enumerate()]


ISSUE_5 = {
    "name": "issue5",
    "base": {
        "cross_attention_dim": 384,
        "text_len": 32,
        "latent_channels": 3,
        "latent_size": 32,
        "vae_downsample": 1,
        "head_dim": 16,
        "norm_num_groups": 8,
    },
    "base_channels": [16],
    "channel_mult": [[1, 3]],
    "levels": [
        {"transformer_depth": [0, 1, 2], "attention": ["self", "cross"], "layers_per_block": [1]},
        {"transformer_depth": [1]},
    ],
    "mid_depth": [1],
}


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {},
            "levels.0: option self-1 is in no member diffusers can build: diffusers cannot give every block "
            "16-channel heads: attention_head_dim[1] is read by the level-0 self-attention up block as head size (16) "
            "and by the level-1 transformer blocks as heads (3)",
        ),
        (
            {"levels": [{"transformer_depth": [0, 1, 2]}, {"transformer_depth": [1]}], "base_channels": [16, 24]},
            "levels.0: option cross-1 with base_channels=24, channel_mult=[1, 3]: head_dim=16: width 24 at level 0",
        ),
        (
            {"levels": [{"transformer_depth": [0]}, {"transformer_depth": [0, 1]}], "mid_depth": [0, 1, 300]},
            "mid_depth.2",
        ),
        (
            {"levels": [{"transformer_depth": [0], "layers_per_block": [1, 0]}, {"transformer_depth": [1]}]},
            "levels.0.layers_per_block.1",
        ),
        (
            {
                "base": {**ISSUE_5["base"], "family": "if"},
                "levels": [{"transformer_depth": [0]}, {"transformer_depth": [0]}],
                "mid_depth": [0],
            },
            "mid_depth: option 0 with base_channels=16, channel_mult=[1, 3]: mid_attention='none'",
        ),
    ],
    ids=["issue-5 self option", "a non-extreme option", "mid depth bound", "res-block bound", "IF mid option"],
)
def test_every_option_is_checked_at_load(tmp_path, changes, message, run_cli):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**ISSUE_5, **changes}))
    with pytest.raises(UserError) as info:
        load_space(path)
    assert message in str(info.value) and "\n" not in str(info.value)
    code, out, err = run_cli(["space", "show", str(path)])
    assert (code, out) == (2, "") and err.startswith(f"error: {path}: ") and err.count("\n") == 1
