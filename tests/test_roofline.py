"""bench/roofline.py: the shapes it times are the model's own, so its FLOPs are the cost model's."""

from __future__ import annotations

import pytest
import torch

from bench.roofline import _op, best_time, collect_shapes, median_member, shape_flops
from unetnas.cost import cost


def test_collected_shapes_carry_exactly_the_cost_models_forward_flops() -> None:
    spec = median_member()
    shapes = collect_shapes(spec, batch=2)
    kinds = {k[0] for k in shapes}
    assert kinds == {"conv", "linear", "bmm"}  # convolutions, projections and attention all recorded
    total = sum(shape_flops(k) * n for k, n in shapes.items())
    assert total / 2 == pytest.approx(cost(spec).flops, rel=1e-9)  # FLOPs per sample


def test_each_recorded_op_runs_forward_and_backward() -> None:
    torch.manual_seed(0)
    key = ("conv", (2, 8, 8, 8), (8, 8, 3, 3), (1, 1), (1, 1))
    assert shape_flops(key) == 2 * 2 * 8 * 8 * 9 * 8 * 8
    wall, cpu = best_time(_op(key, train=True), reps=2, min_s=0.001)
    assert 0 < wall < 1 and 0 <= cpu < 1
