"""``python -m bench prompt-count``: seeds correlation against the prompt count, measured and projected, on
synthetic tables with a planted measurement model (true value + seed effect + per-prompt noise)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import prompt_count


def _table(n_designs: int, v: float, s: float, e: float, n_prompts: int = 128, seed: int = 0) -> dict:
    """Designs with true alignment ~ N(0, v), a seed effect ~ N(0, s) per run and per-prompt noise ~ N(0, e)."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0, np.sqrt(v), n_designs)
    designs = [{"id": f"d{i:02d}", "gmacs": 0.1 + i, "text_blind": False} for i in range(n_designs)]
    designs.append({"id": "blind", "gmacs": 0.05, "text_blind": True})
    runs = []
    for i, d in enumerate(designs):
        for sd in (0, 1):
            mu = 0.0 if d["text_blind"] else truth[i] + rng.normal(0, np.sqrt(s))
            pp = mu + rng.normal(0, np.sqrt(e), n_prompts)
            ck = {"samples": 4096, "train_flops": 1e12, "val_loss": 0.1, "alignment": float(pp.mean())}
            runs.append({"design": d["id"], "seed": sd, "checkpoints": [{**ck, "per_prompt_alignment": pp.tolist()}]})
    return {"designs": designs, "runs": runs}


def test_more_prompts_raise_the_seeds_correlation_and_the_model_finds_the_seed_floor() -> None:
    # V = 1, E = 64: r(P) = 1 / (1 + S + 64 / P); with S = 0 the floor is r = 1, with S = 1 it is 0.5
    for s, floor in ((0.0, 1.0), (1.0, 0.5)):
        res = prompt_count.run(_table(300, 1.0, s, 64.0), 4096, [8, 16, 32, 64, 128], subsets=40, boot=20)
        measured = [m["seeds_pearson"] for m in res["measured"]]
        assert measured == sorted(measured), measured  # more prompts, higher correlation
        expect = [1 / (1 + s + 64 / p) for p in (8, 16, 32, 64, 128)]
        assert np.allclose(measured, expect, atol=0.08), (measured, expect)
        inf = next(p for p in res["projected"] if p["prompts"] == "inf")
        assert abs(inf["pearson"] - floor) < 0.15, (s, inf)
        p256 = next(p for p in res["projected"] if p["prompts"] == "256")
        assert abs(p256["pearson"] - 1 / (1 + s + 64 / 256)) < 0.08, p256
        assert p256["pearson_ci"][0] <= p256["pearson"] <= p256["pearson_ci"][1]


def test_the_cli_prints_the_table_and_refuses_a_table_without_enough_designs(tmp_path, capsys) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(_table(12, 1.0, 0.0, 4.0)))
    assert prompt_count.main(["--table", str(path), "--subsets", "10", "--boot", "5"]) == 0
    out = capsys.readouterr().out
    assert "| 128 (measured) |" in out and "| 256 (projected) |" in out
    path.write_text(json.dumps(_table(3, 1.0, 0.0, 4.0)))
    with pytest.raises(SystemExit) as exit_:
        prompt_count.main(["--table", str(path), "--boot", "5"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"python -m bench prompt-count: error: {path}: 3 reading designs with seeds 0 and 1 at 4096 samples; "
        "5 are needed"
    ]
