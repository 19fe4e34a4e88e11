"""`unetnas export` on a real Optuna study (SQLite) whose trials hold real safetensors checkpoints of tiny diffusers
UNets: folders diffusers loads, cards with rung and standard error, and the refusals (issue 11 item 6, issue 10)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import optuna
import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

from unetnas.build import build_unet
from unetnas.cost import cost
from unetnas.export import MARKER
from unetnas.io import load_space
from unetnas.search import study as S

OBJECTIVES = ("alignment", "gmacs", "params")
DATA = Path(__file__).parent / "data"


def _records(i: int, with_se: bool) -> dict:
    """Rung records as the search writes them (rung 1 is the last); ``with_se``: the newer fields are present."""
    out = {}
    for rung in (0, 1):
        rec = {
            "rung": rung,
            "val_loss": 0.5 - 0.1 * rung - 0.01 * i,
            "train_flops": 1e9 * (rung + 1),
            "steps": 4 * (rung + 1),
        }
        if with_se:
            rec |= {"tifa": 0.4 + 0.1 * i, "tifa_se": 0.02, "alignment": 0.2 + 0.1 * i, "alignment_se": 0.0123}
        out[f"rung_{rung}"] = rec
    return out


def make_study(root: Path, name: str = "s", with_se: bool = True) -> tuple[Path, list]:
    """A finished study at ``root/<name>/study.db`` with two Pareto designs and one dominated, each trial folder
    holding ``checkpoint/model.safetensors`` as the trainer writes it (seeded random weights)."""
    home = root / name
    home.mkdir(parents=True)
    db = home / "study.db"
    study = optuna.create_study(
        study_name=name, storage=f"sqlite:///{db}", directions=["maximize", "minimize", "minimize"]
    )
    study.set_user_attr(S.SETTINGS_ATTR, {"objectives": list(OBJECTIVES), "plan": {"rungs": [1e9, 2e9]}})
    members = [m for m in load_space(DATA / "micro.yaml").enumerate() if m.attention[-1] == "cross"]
    specs = [members[0].with_(name="small"), members[-1].with_(name="large"), members[-1].with_(name="worse")]
    for i, spec in enumerate(specs):
        c = cost(spec)
        folder = home / "trials" / f"{i:04d}"
        (folder / "checkpoint").mkdir(parents=True)
        weights = {k: v.contiguous() for k, v in build_unet(spec, seed=i).state_dict().items()}
        save_file(weights, str(folder / "checkpoint" / "model.safetensors"))
        records = _records(i, with_se)
        last = records["rung_1"]
        align = (last["alignment"] if with_se else -last["val_loss"]) - (1.0 if spec.name == "worse" else 0.0)
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE,
                values=[align, c.gmacs, c.params],
                user_attrs={
                    "spec": spec.model_dump(mode="json"),
                    "gmacs": c.gmacs,
                    "params": c.params,
                    "rung": 1,
                    "dir": str(folder),
                    "flops_spent": 3e9,
                    **records,
                },
            )
        )
    return db, specs


def one_line_error(code: int, out: str, err: str) -> str:
    """Exit 2, no traceback, one stderr line ``error: ...``; returns it."""
    assert code == 2 and "Traceback" not in out + err, (code, err)
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err.strip()


def export_args(db: Path, out: Path, *extra: str, study: str = "s") -> list[str]:
    return ["export", "--study", study, "--storage", f"sqlite:///{db}", "--out", str(out), *extra]


def test_export_loads_in_diffusers_and_shows_rung_and_standard_error(tmp_path, run_cli) -> None:
    db, _ = make_study(tmp_path / "runs")
    code, _, err = run_cli(export_args(db, tmp_path / "out"))
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [MARKER, "s-trial-0000", "s-trial-0001"]  # "worse" is dominated
    for i in (0, 1):
        d = tmp_path / "out" / f"s-trial-{i:04d}"
        unet, info = UNet2DConditionModel.from_pretrained(d, output_loading_info=True)
        assert not any(info.values()), info
        trained = load_file(db.parent / "trials" / f"{i:04d}" / "checkpoint" / "model.safetensors")
        assert all(torch.equal(trained[k], v) for k, v in unet.state_dict().items())
        metrics = json.loads((d / "metrics.json").read_text())
        got = (metrics["rung"], metrics["alignment_se"], metrics["tifa_se"], metrics["weights"])
        assert got == (1, 0.0123, 0.02, True)
        card = (d / "README.md").read_text()
        assert f"| alignment (text-blind-corrected TIFA) | {0.2 + 0.1 * i:.4f} ± 0.0123 (standard error) |" in card
        assert f"| raw TIFA | {0.4 + 0.1 * i:.4f} ± 0.0200 |" in card
        assert "| rung | 1 of rungs 0..1 (the last) |" in card and "from_pretrained" in card


def test_records_without_standard_errors_still_export(tmp_path, run_cli) -> None:
    db, _ = make_study(tmp_path / "runs", with_se=False)
    code, _, err = run_cli(export_args(db, tmp_path / "out"))
    assert code == 0, err
    card = (tmp_path / "out" / "s-trial-0001" / "README.md").read_text()
    assert "| alignment (-validation loss) | -0.3900 |" in card and "±" not in card and "| rung | 1 of" in card


def test_a_missing_checkpoint_is_refused_before_anything_is_written(tmp_path, run_cli) -> None:
    db, _ = make_study(tmp_path / "runs")
    shutil.move(db.parent / "trials" / "0001" / "checkpoint", tmp_path / "elsewhere")
    out = tmp_path / "out"
    err = one_line_error(*run_cli(export_args(db, out)))
    assert "--study='s trial 1': no checkpoint found" in err and "--config-only" in err
    assert not out.exists()
    # --config-only: configs and cards that say so, no weights, a snippet that works
    code, _, err = run_cli(export_args(db, out, "--config-only"))
    assert code == 0, err
    for i in (0, 1):
        d = out / f"s-trial-{i:04d}"
        assert {p.name for p in d.iterdir()} == {"config.json", "spec.yaml", "metrics.json", "README.md"}
        card = (d / "README.md").read_text()
        assert "Config only: this folder holds no weights" in card and "from_pretrained(" not in card
        assert json.loads((d / "metrics.json").read_text())["weights"] is False
        fresh = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(d))
        assert sum(p.numel() for p in fresh.parameters()) == json.loads((d / "metrics.json").read_text())["params"]


def test_a_moved_study_finds_its_trials(tmp_path, run_cli) -> None:
    db, _ = make_study(tmp_path / "runs")
    moved = tmp_path / "archive" / "s"
    shutil.move(db.parent, moved)  # the recorded trial folders no longer exist
    code, _, err = run_cli(export_args(moved / "study.db", tmp_path / "out"))
    assert code == 0, err
    trained = load_file(moved / "trials" / "0001" / "checkpoint" / "model.safetensors")
    exported = load_file(tmp_path / "out" / "s-trial-0001" / "diffusion_pytorch_model.safetensors")
    assert trained.keys() == exported.keys() and all(torch.equal(trained[k], exported[k]) for k in trained)


@pytest.mark.parametrize(
    "damage, rule",
    [
        ("nan", "weights are not all finite (NaN/inf in"),
        ("inf", "weights are not all finite (NaN/inf in"),
        ("drop", "the weights do not match the trial's design"),
    ],
)
def test_weights_that_cannot_be_trusted_are_refused(tmp_path, run_cli, damage, rule) -> None:
    db, _ = make_study(tmp_path / "runs")
    path = db.parent / "trials" / "0000" / "checkpoint" / "model.safetensors"
    weights = load_file(path)
    key = sorted(weights)[3]
    if damage == "drop":
        del weights[key]
    else:
        weights[key].view(-1)[0] = float(damage)
    save_file(weights, str(path))
    for extra in ((), ("--config-only",)):  # a diverged trial is not a result, with or without its weights
        err = one_line_error(*run_cli(export_args(db, tmp_path / "out", *extra)))
        assert err.startswith(f"error: trial 0: {path}: {rule}") and "not exported" in err
    assert not (tmp_path / "out").exists()


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too), by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_another_studys_export_is_refused_unless_replaced(tmp_path, run_cli) -> None:
    """Issue 21 item 2: two studies with the same trial numbers never mix in one --out, and nothing is lost."""
    db_a, _ = make_study(tmp_path / "runs", "a")
    db_b, _ = make_study(tmp_path / "runs", "b")
    out = tmp_path / "out"
    assert run_cli(export_args(db_a, out, study="a"))[0] == 0
    before = snapshot(out)
    err = one_line_error(*run_cli(export_args(db_b, out, study="b")))
    assert err.startswith("error: --out=") and ": holds the export of study 'a'" in err and "--replace" in err
    assert snapshot(out) == before  # nothing mixed, nothing lost
    # a re-export of the same study replaces its own folders (here: fewer of them), leaving no stale one
    assert run_cli(export_args(db_a, out, "--top", "1", study="a"))[0] == 0
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a-trial-0001"]
    # --replace: study b's designs only, under names that carry the study
    code, _, err = run_cli(export_args(db_b, out, "--replace", study="b"))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "b-trial-0000", "b-trial-0001"]
    assert json.loads((out / MARKER).read_text())["study"] == "b"
    assert json.loads((out / "b-trial-0000" / "metrics.json").read_text())["study"] == "b"
    # a folder holding anything an export did not write is refused, even with --replace
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    err = one_line_error(*run_cli(export_args(db_a, out, "--replace", study="a")))
    assert "holds notes.txt, which no export wrote" in err and snapshot(out) == before


@pytest.mark.parametrize("where", ["out-is-a-file", "under-a-file", "design-folder-is-a-file"])
def test_a_file_in_the_way_is_one_line_and_changes_nothing(tmp_path, run_cli, where) -> None:
    db, _ = make_study(tmp_path / "runs")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    if where == "out-is-a-file":
        out, rule = blocker, "a file is in the way (--out must be a folder)"
    elif where == "under-a-file":
        out, rule = blocker / "sub" / "out", f"a file is in the way ({blocker} is not a folder)"
    else:  # an earlier export whose design folder was replaced by a file: not an export's entry any more
        out = tmp_path / "out"
        assert run_cli(export_args(db, out))[0] == 0
        shutil.rmtree(out / "s-trial-0000")
        (out / "s-trial-0000").write_text("in the way")
        rule = "a file is in the way (s-trial-0000 should be an exported design folder)"
    before = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("runs/")}  # the study db is opened
    err = one_line_error(*run_cli(export_args(db, out)))
    assert err.startswith("error: --out=") and f": {rule}" in err, err
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("runs/")} == before


def test_an_unwritable_folder_is_one_line_and_changes_nothing(tmp_path, run_cli) -> None:
    db, _ = make_study(tmp_path / "runs")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):  # root ignores permission bits: a read-only bind mount would be needed
            pytest.skip("running as root: chmod does not make a folder unwritable (see the under-a-file case)")
        for out in (locked, locked / "out"):
            err = one_line_error(*run_cli(export_args(db, out)))
            assert err.startswith("error: --out=") and f": folder {locked} is not writable" in err
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_a_failure_while_writing_leaves_the_earlier_export_whole(tmp_path, run_cli, monkeypatch) -> None:
    """A write that fails half way (here: the third file copy raises, as a full disk would) leaves --out exactly
    as the previous export left it, and no staging folder behind."""
    db, _ = make_study(tmp_path / "runs")
    out = tmp_path / "out"
    assert run_cli(export_args(db, out))[0] == 0
    before = snapshot(out)
    real, calls = shutil.copyfile, []

    def failing_copy(src, dst, *a, **k):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(shutil, "copyfile", failing_copy)
    err = one_line_error(*run_cli(export_args(db, out)))
    assert "cannot write the export (No space left on device); nothing changed there" in err
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == sorted(
        [MARKER, "s-trial-0000", "s-trial-0001"]
    )


def test_design_flops_adds_the_pruned_trial_a_second_chance_continues() -> None:
    """``metrics.json``'s ``design_flops_spent``: a trial's own FLOPs, plus its origin's for a second chance."""
    import optuna

    from unetnas.export import design_flops

    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}

    def trial(number: int, **attrs):  # noqa: ANN202
        t = optuna.trial.create_trial(params={"x": 0.5}, distributions=dist, value=1.0, user_attrs=attrs)
        t.number = number
        return t

    spent = {3: 2e12, 7: 5e12}
    assert design_flops(trial(7, flops_spent=5e12), spent) == 5e12
    assert design_flops(trial(9, flops_spent=4e12, continues=3), spent) == 6e12
    assert design_flops(trial(9, flops_spent=4e12, continues=4), spent) is None  # origin unknown: not guessed
    assert design_flops(trial(9), spent) is None
