"""The analytic cost model against the built model: params exact, forward FLOPs within 0.5% of FlopCounterMode on
a meta-device model, for every preset and 100 random members of each space file; the paper's figures; the GMACs
convention against ptflops.

Time: ``measure`` runs a meta forward under FlopCounterMode, ~0.026 s of CPU per transformer block (a paper-space
member averages ~60 blocks, ~1.8 s). The 100 paper-space members are split: the first ``PAPER_FAST`` run by
default, the rest carry the ``slow`` marker (``pytest -m slow`` runs them).
"""

from __future__ import annotations

import math

import pytest
import torch

from unetnas.build import build_unet, example_inputs
from unetnas.cost import TRAIN_FLOPS_PER_FORWARD, cost
from unetnas.errors import UserError
from unetnas.io import load_space
from unetnas.measure import measure
from unetnas.presets import PRESETS

REL_TOL = 0.005  # the bound; the model is exact today
N_RANDOM = 100
PAPER_FAST = 15
SEED = 2024


def _check(spec) -> None:
    truth = measure(spec)
    c = cost(spec)
    assert c.params == truth["params"], f"params: cost {c.params} != built {truth['params']}"
    rel = abs(c.flops - truth["flops"]) / truth["flops"]
    assert rel <= REL_TOL, f"flops: cost {c.flops} vs FlopCounterMode {truth['flops']} ({rel:.3%})"


def _spec_id(spec) -> str:
    td = "-".join(f"{a[0]}{d}" if a != "none" else "0" for a, d in zip(spec.attention, spec.transformer_depth))
    return (
        f"C{spec.base_channels}_m{''.join(map(str, spec.channel_mult))}_l{spec.layers_per_block[0]}_td{td}"
        f"_mid{spec.mid_attention[0]}{spec.mid_depth}"
    )


def _random_params(path: str, fast: int) -> list:
    specs = load_space(path).sample(N_RANDOM, seed=SEED)
    return [
        pytest.param(s, id=f"{i:03d}-{_spec_id(s)}", marks=() if i < fast else pytest.mark.slow)
        for i, s in enumerate(specs)
    ]


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_cost_matches_built_model(name):
    _check(PRESETS[name])


@pytest.mark.parametrize("spec", _random_params("space/tiny.yaml", N_RANDOM))
def test_tiny_space_member_cost_matches_built_model(spec):
    _check(spec)


@pytest.mark.parametrize("spec", _random_params("space/paper.yaml", PAPER_FAST))
def test_paper_space_member_cost_matches_built_model(spec):
    _check(spec)


def test_cost_at_other_resolution_and_text_len_matches_built_model():
    spec = PRESETS["tiny"]
    c = cost(spec, resolution=64, text_len=5)
    assert (c.resolution, c.text_len) == (64, 5)
    truth = measure(spec.with_(latent_size=64, text_len=5))
    assert c.params == truth["params"]
    assert abs(c.flops - truth["flops"]) / truth["flops"] <= REL_TOL
    assert c.flops != cost(spec).flops


# -- the must-show figures ------------------------------------------------------------------------------
def test_table1_sdxl_and_sd2():
    sdxl, sd2 = cost(PRESETS["sdxl"]), cost(PRESETS["sd2"])
    assert sdxl.params == pytest.approx(2.39e9, rel=0.015)
    assert sdxl.gmacs == pytest.approx(198, rel=0.02)
    assert sd2.params == pytest.approx(0.87e9, rel=0.015)
    assert sd2.gmacs == pytest.approx(86, rel=0.02)


def test_table1_attention_resolutions():
    # Table 1 writes where attention sits as the downsampling factors that carry it: SD2 [4,2,1], SDXL [4,2],
    # IF-XL [4,2,1] (seeds.md): the paper's controlled IF-XL attends at 1x, 2x and 4x, like SD2, not at 2x-8x as the
    # released IF-I-XL does
    def factors(spec) -> list[int]:
        return sorted((2**i for i, a in enumerate(spec.attention) if a != "none"), reverse=True)

    assert factors(PRESETS["sd2"]) == [4, 2, 1] and factors(PRESETS["sdxl"]) == [4, 2]
    for name in ("if-xl", "if-xl-c512"):
        assert factors(PRESETS[name]) == [4, 2, 1] and PRESETS[name].channel_mult == (1, 2, 3, 4), name
        assert PRESETS[name].transformer_depth == (1, 1, 1, 0) and PRESETS[name].layers_per_block == (3,) * 4


def test_if_xl_cost_in_the_controlled_setup():
    # IF blocks, OpenCLIP-H text (1024-d, 77 tokens), no text_proj or added embeddings, 256 px: the analytic figures
    # (exact against the built model in test_preset_cost_matches_built_model). With attention at 2x-8x instead, as the
    # presets had it, both were ~6% larger (4.062e9 and 2.168e9 params).
    xl, c512 = cost(PRESETS["if-xl"]), cost(PRESETS["if-xl-c512"])
    assert (xl.params, round(xl.gmacs, 1)) == (3_823_569_028, 363.6)
    assert (c512.params, round(c512.gmacs, 1)) == (2_035_743_748, 193.4)


def test_diffusers_originals_exact_params():
    assert cost(PRESETS["sdxl-original"]).params == 2_567_463_684
    assert cost(PRESETS["sd2.1-original"]).params == 865_910_724


def test_td4_4_is_45pct_smaller_and_28pct_cheaper_than_sdxl():
    small, sdxl = cost(PRESETS["sdxl-td4_4"]), cost(PRESETS["sdxl"])
    assert 0.53 <= small.params / sdxl.params <= 0.57
    assert 0.70 <= small.macs / sdxl.macs <= 0.74


def test_originals_at_256px_match_environment_md():
    # environment.md, FlopCounterMode on meta at 256 px / 77 tokens: SDXL base 427.78 GFLOPs, SD2.1 181.09;
    # ptflops on CPU: 211.5 and 86.3 GMACs (ptflops adds the bias adds, ~0.05%)
    sdxl = cost(PRESETS["sdxl-original"], resolution=256)
    sd21 = cost(PRESETS["sd2.1-original"], resolution=256)
    assert round(sdxl.gflops, 2) == 427.78
    assert round(sd21.gflops, 2) == 181.09
    assert sdxl.gmacs == pytest.approx(211.5, rel=0.005)
    assert sd21.gmacs == pytest.approx(86.3, rel=0.005)


# -- GMACs convention ---------------------------------------------------------------------------------------------
def _ptflops_macs(spec, math_attention: bool = False) -> int:
    from ptflops import get_model_complexity_info

    model = build_unet(spec, seed=0).eval()
    ctx = torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH) if math_attention else _null()
    with ctx:
        macs, params = get_model_complexity_info(
            model,
            (1,),
            input_constructor=lambda _: example_inputs(spec),
            as_strings=False,
            backend="aten",
            print_per_layer_stat=False,
        )
    assert params == cost(spec).params
    return macs


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _tiny_specs() -> list:
    # the tiny preset and two tiny-space members with cross-attention (one 2-level, one with TD 2)
    members = [
        s
        for s in load_space("space/tiny.yaml").enumerate()
        if "self" not in s.attention and s.attention[-1] == "cross" and s.base_channels == 16
    ]
    picks = [members[0], next(s for s in members if max(s.transformer_depth) == 2)]
    return [pytest.param(PRESETS["tiny"], id="tiny")] + [pytest.param(s, id=_spec_id(s)) for s in picks]


@pytest.mark.parametrize("spec", _tiny_specs())
def test_gmacs_convention_agrees_with_ptflops(spec):
    # ptflops' aten backend counts aten.mm/addmm/bmm/convolution as MACs (plus one MAC per bias element of
    # addmm and convolution). On CPU tensors SDPA runs the fused flash-attention op, which ptflops does not
    # count: so it counts exactly convolution + linear layers, the paper's GMACs convention = cost().macs.
    c = cost(spec)
    assert _ptflops_macs(spec) == pytest.approx(c.macs, rel=0.02)
    # with the math SDPA kernel the QK^T and AV matmuls appear as bmm, each attention FLOP pair one MAC
    assert _ptflops_macs(spec, math_attention=True) == pytest.approx(c.macs + c.attn_flops // 2, rel=0.02)


# -- derived quantities -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sdxl", "if-xl", "tiny", "sdxl-original"])
def test_derived_quantities_are_consistent(name):
    c = cost(PRESETS[name])
    assert c.flops == 2 * c.macs + c.attn_flops
    assert sum(c.by_part.values()) == c.flops
    assert c.by_part["attention_matmul"] == c.attn_flops
    assert 0 < c.attention_share < c.transformer_share < 1
    assert c.train_flops_per_sample == TRAIN_FLOPS_PER_FORWARD * c.flops == 3 * c.flops
    assert c.sampling_flops(steps=50, cfg=True) == 100 * c.flops
    assert c.sampling_flops(steps=50, cfg=False) == 50 * c.flops
    d = c.as_dict()
    for key in ("params", "gmacs", "gflops", "train_gflops_per_sample", "attention_share"):
        assert key in d and math.isfinite(d[key])
    assert d["gmacs"] == c.macs / 1e9


def test_cost_overrides_equal_changed_specs():
    spec = PRESETS["sdxl"]
    assert cost(spec, resolution=512).flops == cost(spec.with_(latent_size=64)).flops
    assert cost(spec, text_len=10).flops == cost(spec.with_(text_len=10)).flops
    # params do not depend on resolution or text length; attention grows faster than the convolutions
    big = cost(spec, resolution=512)
    assert big.params == cost(spec).params
    assert big.attention_share > cost(spec).attention_share


def test_training_flops_factor_matches_a_measured_backward():
    # forward + backward of the tiny preset under FlopCounterMode is ~3x the forward (the cost model's factor)
    from torch.utils.flop_counter import FlopCounterMode

    spec = PRESETS["tiny"]
    model = build_unet(spec, device="meta")
    counter = FlopCounterMode(display=False)
    with counter:
        model(**example_inputs(spec, device="meta")).sample.sum().backward()
    ratio = counter.get_total_flops() / cost(spec).flops
    assert 2.7 <= ratio <= 3.1


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"resolution": 100}, "resolution"),
        ({"resolution": 0}, "resolution"),
        ({"resolution": -32}, "resolution"),
        ({"text_len": 0}, "text_len"),
    ],
)
def test_bad_resolution_or_text_len_is_a_user_error(kwargs, field):
    with pytest.raises(UserError, match=field):
        cost(PRESETS["sdxl"], **kwargs)


def test_cost_is_pure_and_fast():
    import time

    spec = PRESETS["sdxl"]
    assert cost(spec).as_dict() == cost(spec).as_dict()
    start = time.perf_counter()
    for _ in range(200):
        cost(spec)
    per_spec = (time.perf_counter() - start) / 200
    assert per_spec < 0.005  # the goal is < 1 ms; 5x margin for a loaded CI machine
