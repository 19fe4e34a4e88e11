"""A replay whose recipe scores fewer alignment prompts than the table did reads a prefix of the table's prompts
(``GroundTruth.run_at(prompts=...)``) and pays for the prompts it scores; more prompts than the table's, or fewer
where the table kept no per-prompt scores, are refused in one line."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from tests.gt_tables import RECIPE, make_table
from unetnas.errors import UserError
from unetnas.search.groundtruth import GroundTruth
from unetnas.search.replay import replay_search

N = 16  # the synthetic table's prompts (tests/data/replay_recipe.yaml)


def _with_prompts(path, per_prompt: bool = True, say_count: bool = True):
    """The synthetic table with per-prompt alignments whose mean is the checkpoint's alignment."""
    raw = json.loads(path.read_text())
    rng = np.random.default_rng(0)
    for r in raw["runs"]:
        for c in r["checkpoints"]:
            noise = rng.normal(0, 0.2, N)
            pp = c["alignment"] + noise - noise.mean()
            if per_prompt:
                c["per_prompt_alignment"] = pp.tolist()
            if say_count:
                c["prompts"] = N
    path.write_text(json.dumps(raw))
    return GroundTruth.load(path)


def test_a_prefix_of_the_prompts_is_read_and_interpolated_like_the_alignment(tmp_path) -> None:
    gt = _with_prompts(make_table(tmp_path / "gt.json"))
    run = gt.table.runs[0]
    a, b = run.checkpoints[1], run.checkpoints[2]
    f = math.sqrt(a.train_flops * b.train_flops)  # half-way in log FLOPs
    full = gt.run_at(run, f)
    assert full == gt.run_at(run, f, prompts=N) == gt.run_at(run, f, prompts=None)
    half = gt.run_at(run, f, prompts=8)
    pa, pb = np.asarray(a.per_prompt_alignment[:8]), np.asarray(b.per_prompt_alignment[:8])
    assert half["alignment"] == pytest.approx((pa.mean() + pb.mean()) / 2)
    se = (pa.std(ddof=1) / math.sqrt(8) + pb.std(ddof=1) / math.sqrt(8)) / 2
    assert half["alignment_se"] == pytest.approx(se)
    assert half["val_loss"] == full["val_loss"] and half["tifa"] == full["tifa"]  # only the alignment is re-read


def test_more_prompts_than_the_table_or_fewer_without_per_prompt_scores_are_refused(tmp_path) -> None:
    gt = _with_prompts(make_table(tmp_path / "gt.json"))
    gt.check_prompts(N)
    gt.check_prompts(4)
    with pytest.raises(UserError, match=r"scored 16 prompts per checkpoint .*tifa_prompts=32 asks more"):
        gt.check_prompts(32)
    bare = _with_prompts(make_table(tmp_path / "bare.json"), per_prompt=False)
    with pytest.raises(UserError, match=r"keeps no per-prompt alignments .*tifa_prompts=8"):
        bare.check_prompts(8)
    bare.check_prompts(N)
    f = bare.table.runs[0].checkpoints[-1].train_flops
    assert bare.run_at(bare.table.runs[0], f, prompts=N) == bare.run_at(bare.table.runs[0], f)
    unsaid = _with_prompts(make_table(tmp_path / "unsaid.json"), per_prompt=False, say_count=False)
    unsaid.check_prompts(8)  # a table that does not say its count is read as it is
    assert unsaid.run_at(unsaid.table.runs[0], f, prompts=8) == unsaid.run_at(unsaid.table.runs[0], f)


def test_a_replay_asking_more_prompts_than_the_table_stores_nothing(tmp_path) -> None:
    """Refused while preparing, before a study or ledger exists."""
    table = make_table(tmp_path / "gt.json")
    _with_prompts(table)
    data = yaml.safe_load(RECIPE.read_text())
    data["search"]["tifa_prompts"] = 32
    more = tmp_path / "recipe32.yaml"
    more.write_text(yaml.safe_dump(data))
    db = tmp_path / "study.db"
    with pytest.raises(UserError, match=r"tifa_prompts=32 asks more"):
        replay_search(table, 1.2e14, recipe=more, storage=f"sqlite:///{db}", study="more")
    assert not db.exists()


def test_a_replay_with_fewer_prompts_pays_less_evaluation_and_reads_other_alignments(tmp_path) -> None:
    table = make_table(tmp_path / "gt.json")
    _with_prompts(table)
    data = yaml.safe_load(RECIPE.read_text())
    data["search"]["tifa_prompts"] = 4
    fewer = tmp_path / "recipe4.yaml"
    fewer.write_text(yaml.safe_dump(data))
    out = {}
    for name, recipe in (("table", RECIPE), ("fewer", fewer)):
        seen: dict[str, list] = {"eval": [], "alignment": []}

        def on_done(search, job, outcome, seen=seen) -> None:  # noqa: ANN001
            seen["eval"].append(search.ledger.summary()["by_kind"].get("eval", 0.0))
            if outcome.status == "done" and outcome.record.get("alignment") is not None:
                seen["alignment"].append(outcome.record["alignment"])

        replay_search(table, 1.2e14, seed=0, recipe=recipe, cycle=(2,), study=name, on_done=on_done)
        out[name] = seen
    assert out["fewer"]["alignment"] and out["table"]["alignment"]
    assert out["fewer"]["alignment"] != out["table"]["alignment"][: len(out["fewer"]["alignment"])]
    per_run = {k: v["eval"][-1] / len(v["alignment"]) for k, v in out.items()}
    assert per_run["fewer"] < per_run["table"]  # scoring 4 prompts costs less than 16
