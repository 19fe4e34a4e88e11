"""SearchSpace: YAML round trip, counting, enumeration, sampling, membership and validation."""

from __future__ import annotations

import optuna
import pytest
from pydantic import ValidationError

from unetnas.io import load_space, save_model
from unetnas.presets import PRESETS
from unetnas.space import SearchSpace

SPACE_FILES = ["space/paper.yaml", "space/tiny.yaml"]


def _key(spec) -> str:
    return spec.model_dump_json(exclude={"name"})


@pytest.fixture(scope="module")
def paper() -> SearchSpace:
    return load_space("space/paper.yaml")


@pytest.fixture(scope="module")
def tiny() -> SearchSpace:
    return load_space("space/tiny.yaml")


@pytest.mark.parametrize("path", SPACE_FILES)
def test_space_yaml_round_trip_is_lossless(path, tmp_path):
    space = load_space(path)
    out = save_model(space, tmp_path / "space.yaml")
    back = load_space(out)
    assert back == space
    assert back.model_dump() == space.model_dump()
    assert [_key(s) for s in back.sample(20, seed=1)] == [_key(s) for s in space.sample(20, seed=1)]


# Handcrafted spaces whose sizes are counted by hand in the comment.
HANDCRAFTED = {
    # 2 C x mult [1,2]: level0 {none} x level1 {none->mid{none,cross1}=2, cross1, cross2} = 4 -> 8
    "two-level": ({"base_channels": [16, 32], "channel_mult": [[1, 2]],
                   "levels": [{"transformer_depth": [0]}, {"transformer_depth": [0, 1, 2]}],
                   "mid_depth": [0, 1]}, 8),
    # 1 C, two mults; untied res blocks; self-attention levels have depth 1 (so "self" at TD 2 is no option);
    # the mid block is free (none or cross 2; the repeated 0 counts once) when the last level is not cross.
    # [1,2]:   lpb 2x1=2 ; level0 {none,self1,cross1}=3 ; level1 {cross1}=1              -> 2*3*1   = 6
    # [1,2,2]: lpb 2x1x2=4 ; level0 3 ; level1 1 ; level2 {none->mid{none,cross2}=2, cross2} = 3 -> 4*3*3 = 36
    "untied": ({"base_channels": [32], "channel_mult": [[1, 2], [1, 2, 2]], "tie_layers_per_block": False,
                "levels": [{"transformer_depth": [0, 1], "attention": ["self", "cross"], "layers_per_block": [1, 2]},
                           {"transformer_depth": [1]},
                           {"transformer_depth": [0, 2], "attention": ["self", "cross"], "layers_per_block": [1, 2]}],
                "mid_depth": [0, 2, 0]}, 42),
    # a self-attention last level frees the mid block: 2 C x level1 {none->2, self1->2, cross1} = 5 -> 10
    "self-last": ({"base_channels": [16, 32], "channel_mult": [[1, 2]],
                   "levels": [{"transformer_depth": [0]},
                              {"transformer_depth": [0, 1], "attention": ["self", "cross"]}],
                   "mid_depth": [0, 1]}, 10),
    # a single member
    "point": ({"base_channels": [32], "channel_mult": [[1, 2, 2]],
               "levels": [{"transformer_depth": [0], "layers_per_block": [1]}, {"transformer_depth": [1]},
                          {"transformer_depth": [1]}]}, 1),
}  # fmt: skip


def _handcrafted(name: str) -> SearchSpace:
    fields, _ = HANDCRAFTED[name]
    base = {k: v for k, v in PRESETS["tiny"].model_dump().items()
            if k in ("cross_attention_dim", "text_len", "latent_channels", "latent_size", "vae_downsample",
                     "head_dim", "norm_num_groups")}  # fmt: skip
    return SearchSpace.model_validate({"name": name, "base": base, **fields})


@pytest.mark.parametrize("name", list(HANDCRAFTED))
def test_size_matches_hand_count_and_enumeration(name):
    space = _handcrafted(name)
    members = list(space.enumerate())
    assert space.size() == len(members) == HANDCRAFTED[name][1]
    assert len({_key(m) for m in members}) == len(members)  # distinct
    assert all(space.contains(m) for m in members)


def test_tiny_size_equals_enumeration(tiny):
    members = list(tiny.enumerate())
    assert tiny.size() == len(members) == len({_key(m) for m in members})
    # by hand: level1 {none, self1, cross1, cross2} (self has depth 1), mid {none, cross1} where level 2 is not cross
    # 3 C x ( [1,2]:   level1 last: none->2 + self1->2 + cross1 + cross2 = 6
    #        + [1,2,2]: level1 4 options x level2 {none->2, cross1, cross2} = 4 -> 16 ) = 66
    assert tiny.size() == 66


def test_paper_size_equals_enumeration(paper):
    members = list(paper.enumerate())
    assert paper.size() == len(members) == len({_key(m) for m in members})
    # by hand, per C: [1,2,4]: 2 (lpb) x 2 (L0) x 4 (L1) x (1 x 2 mid + 7) = 144;
    # each 4-level mult: 2 x 2 x 4 x 8 x (1 x 2 mid + 1) = 384; 144 + 2 x 384 = 912; x 6 C = 5472
    assert paper.size() == 5472


def test_enumerate_refuses_large_spaces(paper):
    with pytest.raises(ValueError, match="5472"):
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
    trial = optuna.trial.FixedTrial({"base_channels": 32, "channel_mult": "1-2-2", "level_1": "cross-1",
                                     "level_2": "cross-1"})  # fmt: skip
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


PAPER_MEMBERS = {"sd2", "sd2-c512", "sdxl-c128", "sdxl-c192", "sdxl", "sdxl-c384", "sdxl-td2", "sdxl-td4", "sdxl-td12",
                 "sdxl-td14", "sdxl-td4_4", "sdxl-td4_8", "sdxl-td4_12", "sdxl-c384-td4_12"}  # fmt: skip


def test_contains_presets(paper, tiny):
    # every Table-1 variant built with SD blocks lies in the paper space; IF-XL (IF blocks), the diffusers
    # originals (other resolution / text) and tiny do not
    assert {n for n, s in PRESETS.items() if paper.contains(s)} == PAPER_MEMBERS
    assert {n for n, s in PRESETS.items() if tiny.contains(s)} == {"tiny"}


@pytest.mark.parametrize(
    "changes",
    [{"base_channels": 48}, {"transformer_depth": (0, 1, 3), "mid_depth": 3}, {"head_dim": 32},
     {"layers_per_block": (2, 2, 2)}, {"text_len": 7}, {"channel_mult": (1, 2, 4)},
     {"attention": ("none", "cross", "self"), "transformer_depth": (0, 1, 1)},
     {"attention": ("self", "cross", "cross"), "transformer_depth": (1, 1, 1)},
     {"attention": ("none", "cross", "none"), "transformer_depth": (0, 1, 0), "mid_depth": 2}],
    ids=str,
)  # fmt: skip
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
    [({"levels": [{"transformer_depth": [0]}]}, "levels"),
     ({"base": {"base_channels": 64}}, "base"),
     ({"base_channels": [20]}, "base_channels"),
     ({"base_channels": []}, "base_channels"),
     ({"levels": [{"transformer_depth": [0]}, {"transformer_depth": [1]},
                  {"transformer_depth": [1], "attention": ["full"]}]}, "attention"),
     ({"levels": [{"transformer_depth": [0]}, {"transformer_depth": [2], "attention": ["self"]},
                  {"transformer_depth": [1]}]}, "levels"),
     ({"mid_attention": ["cross"]}, "mid_attention"),
     ({"colour": "blue"}, "colour")],
    ids=["too few levels", "searched field in base", "impossible width", "no choices", "bad kind",
         "self level deeper than 1", "mid kind is not a choice", "unknown field"],
)  # fmt: skip
def test_space_validators_reject_and_name_the_field(tiny, changes, field):
    data = {**tiny.model_dump(), **changes}
    with pytest.raises(ValidationError) as info:
        SearchSpace.model_validate(data)
    assert field in str(info.value)
