"""The ground-truth benchmark: a real (micro) table is written and resumed; the analyses read tables correctly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench import ground_truth, proxy_fidelity, science
from bench.table_stats import load_at_samples
from unetnas.spec import UNetSpec

DATA = Path(__file__).parent / "data"


def test_ground_truth_writes_and_resumes_a_table(tmp_path) -> None:
    out, work = tmp_path / "gt.json", tmp_path / "work"
    argv = ["--space", str(DATA / "micro.yaml"), "--recipe", str(DATA / "smoke.yaml"), "--horizon", "6e9"]
    argv += ["--checkpoints", "2", "--ratio", "3", "--prompts", "4", "--seeds", "1", "--extra-seeds", "1"]
    argv += ["--only", "d00", "--out", str(out), "--work", str(work)]
    assert ground_truth.main(argv) == 0
    table = json.loads(out.read_text())
    assert table["version"] == 2 and table["meta"]["complete"] and table["meta"]["horizon_unit"] == "flops"
    runs = table["runs"]
    assert [(r["design"], r["seed"]) for r in runs] == [("d00", 0), ("d00", 1)]  # d00 is also an extra-seed pick
    cks = runs[0]["checkpoints"]
    assert [c["train_flops"] <= h * 1.0001 for c, h in zip(cks, [2e9, 6e9])] == [True, True]
    assert cks[0]["train_flops"] < cks[1]["train_flops"] and cks[1]["wall_s"] >= cks[0]["wall_s"]
    for c in cks:
        assert len(c["per_prompt_alignment"]) == 4 and c["alignment_se"] >= 0 and math.isfinite(c["val_loss"])
    assert runs[0]["checkpoints"] != runs[1]["checkpoints"]  # another seed, another run
    (rows,) = work.glob("d00-s0-*/rows.json")
    stamp = rows.stat().st_mtime_ns
    assert ground_truth.main(argv) == 0  # resumed: finished runs are read back, not retrained
    assert rows.stat().st_mtime_ns == stamp
    assert json.loads(out.read_text())["runs"] == runs


def test_ground_truth_in_parallel_processes_equals_one_process_and_a_deadline_keeps_what_finished(
    tmp_path,
) -> None:
    """--processes 2 (spawned workers) writes the same rows as one process; --deadline-s stops and keeps rows."""
    common = ["--space", str(DATA / "micro.yaml"), "--recipe", str(DATA / "smoke-samples.yaml"), "--prompts", "4"]
    common += ["--horizon", "16", "--checkpoints", "2", "--seeds", "1", "--extra-seeds", "0", "--align-from", "1"]
    common += ["--only", "d00,d01", "--precision", "fp32"]
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    assert ground_truth.main([*common, "--out", str(one), "--work", str(tmp_path / "w1")]) == 0
    assert ground_truth.main([*common, "--out", str(two), "--work", str(tmp_path / "w2"), "--processes", "2"]) == 0
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert a["meta"]["complete"] and b["meta"]["complete"] and a["meta"]["devices"] == {"cpu": 4}
    # eval_flops left out: each process's first scoring also pays the one-off encoding of the prompts
    measured = ("val_loss", "alignment", "per_prompt_alignment", "train_flops", "samples", "steps")
    pick = lambda t: [(r["design"], [{k: c[k] for k in measured} for c in r["checkpoints"]]) for r in t["runs"]]  # noqa: E731
    assert pick(a) == pick(b)  # bitwise: same seeds, same arithmetic, one process or two
    seeded = tmp_path / "seeded.json"  # a committed table resumes in an empty work dir: nothing is trained again
    seeded.write_text(one.read_text())
    argv = [*common, "--out", str(seeded), "--work", str(tmp_path / "w4"), "--seed-rows", "--deadline-s", "1e-3"]
    assert ground_truth.main(argv) == 0
    assert json.loads(seeded.read_text())["runs"] == a["runs"] and len(list((tmp_path / "w4").glob("*/rows.json"))) == 2
    late = tmp_path / "late.json"
    assert ground_truth.main([*common, "--out", str(late), "--work", str(tmp_path / "w3"), "--deadline-s", "1e-3"]) == 0
    t = json.loads(late.read_text())
    assert not t["meta"]["complete"] and t["runs"] == [] and t["partial_runs"] == []  # nothing started in time


def test_ground_truth_at_equal_samples_pilot_then_full_reuses_runs(tmp_path) -> None:
    """Samples unit: every design reaches the same samples at each checkpoint; a breadth-first pilot's runs are
    reused by a longer table whose checkpoints include the pilot's."""
    recipe = DATA / "smoke-samples.yaml"
    work = tmp_path / "work"
    common = ["--space", str(DATA / "micro.yaml"), "--recipe", str(recipe), "--prompts", "4", "--work", str(work)]
    pilot = tmp_path / "pilot.json"
    argv = common + ["--unit", "samples", "--horizon", "16", "--checkpoints", "2", "--ratio", "2", "--pilot", "2"]
    argv += ["--align-from", "1"]  # the first checkpoint: validation loss only
    assert ground_truth.main(argv + ["--out", str(pilot)]) == 0
    table = json.loads(pilot.read_text())
    assert table["meta"]["horizon_unit"] == "samples" and table["meta"]["horizons"] == [8.0, 16.0]
    assert len({r["design"] for r in table["runs"]}) == 3 and {r["seed"] for r in table["runs"]} == {0, 1}
    fps = {d["id"]: d["train_flops_per_sample"] for d in table["designs"]}
    for r in table["runs"]:
        assert [c["samples"] for c in r["checkpoints"]] == [8, 16]  # equal samples, whatever the design's cost
        assert r["checkpoints"][-1]["train_flops"] == pytest.approx(16 * fps[r["design"]])
        first, last = r["checkpoints"]
        assert first["alignment"] is None and first["per_prompt_alignment"] is None and math.isfinite(first["val_loss"])
        assert len(last["per_prompt_alignment"]) == 4 and last["eval_flops"] > first["eval_flops"]
    from unetnas.search.replay import GroundTruth

    assert GroundTruth.load(pilot).table.version == 2  # the replay reads v2 tables
    stamps = {p: p.stat().st_mtime_ns for p in work.glob("*/rows.json")}
    full = tmp_path / "full.json"
    argv = common + ["--horizon", "32", "--checkpoints", "3", "--seeds", "1", "--extra-seeds", "0"]
    assert ground_truth.main(argv + ["--only", table["runs"][0]["design"], "--out", str(full)]) == 0
    (run,) = json.loads(full.read_text())["runs"]
    assert [c["samples"] for c in run["checkpoints"]] == [8, 16, 32]
    assert run["checkpoints"][:2] == table["runs"][0]["checkpoints"]  # the pilot's rows, not retrained
    assert sum(p.stat().st_mtime_ns != t for p, t in stamps.items()) == 1  # only that run continued


def test_ground_truth_refuses_a_recipe_of_the_other_unit(tmp_path, capsys) -> None:
    from unetnas.errors import UserError

    with pytest.raises(UserError, match="horizon_unit is flops"):
        ground_truth.main(["--unit", "samples", "--recipe", str(DATA / "smoke.yaml"), "--out", str(tmp_path / "x")])


def test_designs_cover_the_space_and_one_text_blind_control() -> None:
    from unetnas.io import load_space

    ds = ground_truth.designs(Path("space/tiny.yaml"))
    space = load_space(Path("space/tiny.yaml"))
    assert sum(d["text_blind"] for d in ds) == 1
    assert len(ds) - 1 == space.size() >= 32
    blind = next(d for d in ds if d["text_blind"])
    assert not ground_truth.text_reading(UNetSpec.model_validate(blind["spec"]))
    picks = ground_truth.second_seed_ids(ds, 8)
    assert len(picks) == 8 and blind["id"] in picks
    order = ground_truth.spread_order(ds)
    assert sorted(order) == sorted(d["id"] for d in ds) and order[2] == blind["id"]
    gmacs = {d["id"]: d["gmacs"] for d in ds}
    first = sorted(gmacs[i] for i in order[:5] if i != blind["id"])  # a prefix spans the GMACs range
    assert first[0] == min(gmacs.values()) and first[-1] == max(gmacs.values()) and len(first) == 4
    jobs = ground_truth.plan_jobs(ds, 2, picks)
    assert jobs[: len(ds)] == [(i, 0) for i in order] and jobs[-len(picks) :] == [(i, 2) for i in order if i in picks]


def _synthetic(path: Path, n_prompts: int = 64) -> Path:
    """A table over tiny's designs whose final alignment follows a known law: depth at level 1 helps more per
    parameter than width; cross-attention at level 0 adds nothing. Early checkpoints are noisy copies."""
    rng = np.random.default_rng(0)
    ds = ground_truth.designs(Path("space/tiny.yaml"))
    runs = []
    for d in ds:
        s = d["spec"]
        l1 = s["transformer_depth"][1] if s["attention"][1] == "cross" else 0
        true = 0.0 if d["text_blind"] else 0.05 + 0.06 * l1 + 0.01 * (s["base_channels"] - 16) / 8
        for seed in (0, 1) if d["id"] in ground_truth.second_seed_ids(ds, 8) else (0,):
            cks = []
            for k, share in enumerate((1 / 16, 1 / 4, 1.0)):
                mean = true * share**0.3 + rng.normal(0, 0.01)
                per = mean + rng.normal(0, 0.15, n_prompts)
                cks.append(
                    {
                        "train_flops": 2.4e12 * share,
                        "steps": 10 * (k + 1),
                        "samples": 320 * (k + 1),
                        "wall_s": 1.0 + k,
                        "eval_flops": 1e9,
                        "eval_s": 0.1,
                        "val_loss": 0.1 - 0.2 * mean,
                        "tifa": 0.2 + mean,
                        "tifa_se": 0.02,
                        "alignment": float(per.mean()),
                        "alignment_se": float(per.std(ddof=1) / math.sqrt(n_prompts)),
                        "per_prompt_alignment": per.tolist(),
                    }
                )
            runs.append({"design": d["id"], "seed": seed, "checkpoints": cks})
    path.write_text(
        json.dumps({"version": 1, "meta": {"space": "space/tiny.yaml", "complete": True}, "designs": ds, "runs": runs})
    )
    return path


def test_proxy_fidelity_reports_the_issue_fields(tmp_path, capsys) -> None:
    table = _synthetic(tmp_path / "t.json")
    assert proxy_fidelity.main(["--table", str(table), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"spearman_by_checkpoint", "first_checkpoint_share", "seed_noise_ceiling"} <= res.keys()
    assert res["first_checkpoint_share"] == pytest.approx(1 / 16)
    final = res["spearman_by_checkpoint"]["alignment"][-1]
    assert final["rho"] == 1.0  # the final checkpoint ranks itself perfectly
    first = res["spearman_by_checkpoint"]["alignment"][0]
    assert first["ci"][0] <= first["rho"] <= first["ci"][1] and first["n"] == 35
    assert 0 < res["seed_noise_ceiling"]["rho"] <= 1 and res["seed_noise_ceiling"]["n"] == 8


def _synthetic_v2(path, quality: list[float], early_val_order: list[float]) -> Path:
    """A v2 (equal-samples) table: design i's alignment grows as quality[i] * log2(samples / 256) (plus a small
    seed offset), validation loss at every checkpoint ranks designs by ``early_val_order``; alignment from 2,048
    samples on (as ``--align-from 2``), a text-blind control that must be left out, the last run still partial."""
    ds = [{"id": f"d{i}", "spec": {}, "params": 1e6, "gmacs": 0.01 * (i + 1), "text_blind": False} for i in range(5)]
    ds.append({"id": "blind", "spec": {}, "params": 1e6, "gmacs": 0.02, "text_blind": True})
    runs = []
    for i, d in enumerate(ds):
        for seed in (0, 1):
            cks = []
            for s in (512, 1024, 2048, 4096, 8192):
                a = 0.0 if d["text_blind"] else quality[i] * math.log2(s / 256) + 0.001 * seed
                scored = s >= 2048
                cks.append(
                    {
                        "samples": s,
                        "train_flops": s * 1e8,
                        "steps": s // 32,
                        "val_loss": 1.0 / s + (0.0 if d["text_blind"] else early_val_order[i]),
                        "tifa": 0.3 + a if scored else None,
                        "alignment": a if scored else None,
                    }
                )
            runs.append({"design": d["id"], "seed": seed, "checkpoints": cks})
    partial = runs.pop(0)  # d0 seed 0 still running: the table is read where every design has both seeds
    partial["checkpoints"] = partial["checkpoints"][:4]
    meta = {"horizon_unit": "samples", "complete": False, "align_from": 2}
    table = {"version": 2, "meta": meta, "designs": ds, "runs": runs, "partial_runs": [partial]}
    path.write_text(json.dumps(table))
    return path


def test_proxy_fidelity_on_an_equal_samples_table_uses_a_held_out_truth(tmp_path, capsys) -> None:
    quality = [0.01, 0.02, 0.03, 0.04, 0.05]
    table = _synthetic_v2(tmp_path / "v2.json", quality, early_val_order=[0.5, 0.4, 0.3, 0.2, 0.1])
    res = proxy_fidelity.fidelity_samples(table)
    assert res["final_samples"] == 4096 and res["designs"] == 5 and res["seeds"] == [0, 1]  # control left out
    by = res["spearman_by_checkpoint"]
    assert [r["rho"] for r in by["alignment"][:2]] == [None, None]  # not scored below 2,048 samples
    assert by["alignment"][3]["rho"] == 1.0 and by["val_loss"][0]["rho"] == 1.0
    assert by["extrapolated"][2]["rho"] is None and by["extrapolated"][3]["rho"] == 1.0  # needs two scored points
    assert res["seed_noise_ceiling"]["rho"] == 1.0
    # a proxy that ranks the designs backwards is told so
    table = _synthetic_v2(tmp_path / "rev.json", quality, early_val_order=[0.1, 0.2, 0.3, 0.4, 0.5])
    assert proxy_fidelity.fidelity_samples(table)["spearman_by_checkpoint"]["val_loss"][0]["rho"] == -1.0
    assert proxy_fidelity.fidelity_samples(table, final=8192)["designs"] == 4  # d0 has one seed at 8,192
    assert proxy_fidelity.main(["--table", str(table), "--final", "16384"]) == 2
    assert "fewer than 3 reading designs have two seeds scored at 16384 samples" in capsys.readouterr().out


def test_science_finds_the_planted_effects(tmp_path, capsys) -> None:
    table = _synthetic(tmp_path / "t.json")
    res = science.science(table)
    dw = res["depth_vs_width"]
    assert dw["depth_per_m_params"]["n"] >= 10 and dw["width_per_m_params"]["n"] >= 10
    assert dw["holds"] == "yes"  # depth: +0.06 per ~0.2-0.5M params; width: +0.01 per ~0.3M+
    p = res["placement"]
    assert p["add_cross_at_level0"]["ci"][0] < 0 < p["add_cross_at_level0"]["ci"][1]  # planted: no effect
    assert res["text_blind"][0]["alignment"] == pytest.approx(0.0, abs=0.1)
    assert science.main(["--table", str(table)]) == 0
    assert "depth vs width" in capsys.readouterr().out


def test_equal_samples_reads_checkpoints_interpolates_between_and_finds_a_separated_front() -> None:
    from bench import equal_samples as es

    def ck(samples: int, a: float, pp: list[float]) -> dict:
        return {"samples": samples, "alignment": a, "per_prompt_alignment": pp, "val_loss": 0.1}

    rng = np.random.default_rng(0)
    base = np.linspace(-0.1, 0.1, 40)
    designs = [{"id": f"d{i}", "gmacs": g, "text_blind": i == 4} for i, g in enumerate([1.0, 2.0, 3.0, 4.0, 2.5])]
    level = {"d0": 0.1, "d1": 0.3, "d2": 0.31, "d3": 0.5, "d4": 0.0}  # d2 within noise of d1; d4: the control
    runs = []
    for d in designs:
        noise = rng.normal(0, 0.1, 40)  # per-prompt scatter: a paired SE of ~0.02 between two designs
        for seed in (0, 1):
            a = level[d["id"]] + 0.001 * seed
            runs.append(
                {
                    "design": d["id"],
                    "seed": seed,
                    "checkpoints": [ck(100, 0.0, list(base * 0)), ck(400, a, list(base + noise + a))],
                }
            )
    runs.append({"design": "d3", "seed": 2, "checkpoints": [ck(100, 0.0, list(base * 0))]})  # ends early: ignored
    table = {"designs": designs, "runs": runs}
    res = es.analyse(table, 400)
    assert res["front"] == ["d0", "d1", "d2", "d3"] and res["separated_front"] == ["d0", "d1", "d3"]
    assert res["seed_spearman"]["rho"] == 1.0 and res["spearman_alignment_gmacs"]["rho"] == 1.0
    mid = es.analyse(table, 200)  # halfway in log(samples): half the alignment
    row = {r["id"]: r for r in mid["rows"]}
    assert row["d3"]["alignment"] == pytest.approx(0.25 + 0.00025, abs=1e-4) and row["d3"]["seeds"] == [0, 1]
    assert es.analyse(table, 800)["designs"] == 0  # never extrapolated
    v1 = json.loads((Path("bench/data/gt-tiny-v1.json")).read_text())
    at = es.analyse(v1, 1920)  # the largest v1 design's last checkpoint: every design reaches it
    assert at["reading"] == 34 and at["designs"] == 35
    iso = es.analyse(v1, 2.3e12, key="train_flops")  # isoFLOP view: just below v1's common horizon (~2.4e12)
    assert iso["reading"] == 34 and iso["front"][0] == "d00"  # v1 at equal FLOPs: the smallest design leads


def test_ground_truth_dry_run_plans_runs_and_flops_without_training(tmp_path, capsys) -> None:
    argv = ["--space", str(DATA / "micro.yaml"), "--recipe", str(DATA / "smoke-samples.yaml"), "--horizon", "64"]
    argv += ["--seeds", "2", "--extra-seeds", "2", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "t.json")]
    assert ground_truth.main([*argv, "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    n = len(ground_truth.designs(DATA / "micro.yaml"))
    assert plan["runs"] == 2 * n + 2
    assert plan["horizons"] == [8.0, 16.0, 32.0, 64.0]  # 2, 4 and 8 samples round up to one batch of 8: deduplicated
    assert plan["train_flops"] > 0 and plan["eval_flops"] > 0
    fewer = ground_truth.main([*argv, "--dry-run", "--align-from", "3"])
    assert fewer == 0 and json.loads(capsys.readouterr().out)["eval_flops"] < plan["eval_flops"]
    assert not (tmp_path / "w").exists() and not (tmp_path / "t.json").exists()


def test_science_at_equal_samples_reads_the_seed_mean_of_a_v2_table(tmp_path) -> None:
    """The same planted law in a v2 table (every design the same sample counts): the contrasts are read at equal
    samples on the seed means, find the law, and a design's value is the mean of its seeds."""
    v1 = json.loads(_synthetic(tmp_path / "t.json").read_text())
    v2 = {**v1, "version": 2, "meta": {"space": "space/tiny.yaml", "horizon_unit": "samples", "complete": False}}
    (tmp_path / "v2.json").write_text(json.dumps(v2))
    res = science.science(tmp_path / "v2.json")
    assert res["equal"] == "samples" and res["samples"] == 960  # the deepest checkpoint every design scored
    assert res["depth_vs_width"]["holds"] == "yes"
    assert res["placement"]["add_cross_at_level0"]["ci"][0] < 0 < res["placement"]["add_cross_at_level0"]["ci"][1]
    twice = next(r for r in v1["runs"] if r["seed"] == 1)
    both = [r["checkpoints"][1]["alignment"] for r in v1["runs"] if r["design"] == twice["design"]]
    _, designs, s = load_at_samples(tmp_path / "v2.json", 640)
    assert s == 640 and designs[twice["design"]].final(0)["alignment"] == pytest.approx(np.mean(both))
    assert designs[twice["design"]].final(0)["seeds"] == 2


def test_cross_device_compares_the_same_runs_only() -> None:
    from bench import cross_device

    def table(device: str, val: float, align: float, seeds=(0,)) -> dict:
        ck = [{"samples": 256, "val_loss": val, "alignment": None, "device": device}]
        ck.append({"samples": 512, "val_loss": val / 2, "alignment": align, "alignment_se": 0.02, "device": device})
        return {"runs": [{"design": "d00", "seed": s, "checkpoints": ck} for s in seeds], "partial_runs": []}

    res = cross_device.compare(table("cpu", 0.5, 0.10), table("NVIDIA H200", 0.504, 0.13, seeds=(0, 1)))
    assert res["runs"] == 1 and res["checkpoints"] == 2 and res["scored"] == 1  # seed 1 is in one table only
    assert res["val_loss_rel_diff_max"] == pytest.approx(0.008) and res["val_loss_within_1pct"] == 2
    assert res["alignment_abs_diff_max"] == pytest.approx(0.03) and res["devices_b"] == ["NVIDIA H200"]
