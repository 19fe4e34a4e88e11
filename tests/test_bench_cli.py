"""Bad command-line input to the table benchmarks is one line on stderr and exit status 2 (no usage block)."""

from __future__ import annotations

import importlib

import pytest

CASES = [
    ("bench.search_efficiency", ["--truth-at", "bogus"], "argument --truth-at: invalid choice: 'bogus'"),
    ("bench.second_chance", ["--seeds", "many"], "argument --seeds: invalid int value: 'many'"),
    ("bench.equal_samples", ["--samples", "x"], "argument --samples: invalid float value: 'x'"),
    ("bench.prompt_count", ["--prompts", "8", "lots"], "argument --prompts: invalid int value: 'lots'"),
    ("bench.proxy_fidelity", ["--nonsense"], "unrecognized arguments: --nonsense"),
    ("bench.science", ["--samples"], "argument --samples: expected one argument"),
    ("bench.cross_device", ["--nonsense"], "unrecognized arguments: --nonsense"),
    ("bench.ground_truth", ["--unit", "steps"], "argument --unit: invalid choice: 'steps'"),
]


@pytest.mark.parametrize(("module", "argv", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_arguments_are_one_line_and_exit_2(module, argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(argv)
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "usage:" not in captured.err, captured.err
    assert lines[0].startswith("python -m bench ")


def test_bracket_types_parses_cycles_and_refuses_bad_ones(capsys) -> None:
    from bench import bracket_types

    assert bracket_types.parse("0+1+2,0,2") == [(0, 1, 2), (0,), (2,)]
    with pytest.raises(SystemExit) as exit_:
        bracket_types.main(["--cycles", "0+0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "python -m bench bracket-types: error: argument --cycles: '0+0': each cycle lists distinct rungs >= 0"
    ]


def test_bracket_types_refuses_a_rung_the_plan_does_not_have(capsys) -> None:
    from bench import bracket_types

    with pytest.raises(SystemExit) as exit_:
        bracket_types.main(["--table", "bench/data/gt-tiny-plus-v2.json", "--seeds", "1", "--tuning", "--cycles", "5"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cycle must list distinct rungs in 0..2, got (5,)" in err[0], err


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        ("1", "--tifa-prompts='1': must be at least 2"),
        ("256", "scored 128 prompts per checkpoint (design d00); the recipe's tifa_prompts=256 asks more"),
    ],
)
def test_search_efficiency_refuses_a_prompt_count_the_table_cannot_answer(prompts, message, capsys) -> None:
    from bench import search_efficiency

    argv = ["--table", "bench/data/gt-tiny-plus-v2.json", "--seeds", "1", "--tuning", "--methods", "random"]
    assert search_efficiency.main([*argv, "--tifa-prompts", prompts]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
