"""bench/parallel_trials.py: real trainers in child processes, each configuration timed on equal work; the largest
member of the tiny space is what `--specs max` names."""

from __future__ import annotations

import json

import pytest

from bench.parallel_trials import main
from bench.roofline import get_spec
from unetnas.cost import cost
from unetnas.io import load_space


def test_max_is_the_dearest_member_of_the_tiny_space() -> None:
    members = list(load_space("space/tiny.yaml").enumerate())
    top = max(cost(m).train_flops_per_sample for m in members)
    assert cost(get_spec("max")).train_flops_per_sample == top > cost(get_spec("median")).train_flops_per_sample


def test_an_unknown_configuration_is_one_line_exit_2(capsys) -> None:
    assert main(["--configs", "2x1,3x1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --configs=3x1: must be one of 1x2, 1x2-passive, 2x1"]


@pytest.mark.slow
def test_two_one_thread_processes_train_and_are_timed_together(capsys, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", ".")
    argv = ["--specs", "median", "--configs", "2x1,1x2-passive", "--rounds", "1", "--steps", "1", "--warmup", "0"]
    assert main([*argv, "--roofline-reps", "0", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["threads"] == {"2x1": [1, 1], "1x2-passive": [2]}
    assert all(v > 0 for v in row["samples_per_s"].values()) and row["roofline_2cores"] is None
