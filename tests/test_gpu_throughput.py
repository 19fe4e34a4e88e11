"""`python -m bench gpu-throughput`: the CPU smoke run end to end (shrunken presets, real Trainer on DeepSpeed and a
real plain loop), its pieces (peak table, micro-batch search, synthetic source), bad input, and on a GPU the real
measurement of one paper preset (skipped without CUDA)."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

from bench import gpu_throughput as gt
from unetnas.presets import get_preset
from unetnas.train.trainer import check_fits

CUDA = torch.cuda.is_available()


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = gt.main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_peak_table_names_gpus_as_torch_does() -> None:
    assert gt.peak_tflops("NVIDIA H200") == 989.0
    assert gt.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0  # SXM
    assert gt.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gt.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gt.peak_tflops("NVIDIA GeForce RTX 4090") is None


def test_micro_batch_search_doubles_until_out_of_memory_cap_or_deadline() -> None:
    def probe(m: int) -> float:
        if m > 16:
            raise torch.OutOfMemoryError("CUDA out of memory (test probe)")
        return 0.01 * m

    best, log = gt.largest_micro_batch(probe, start=2, cap=256, deadline=math.inf)
    assert (
        best == 16
        and [p["micro_batch"] for p in log] == [2, 4, 8, 16, 32]
        and log[-1] == {"micro_batch": 32, "oom": True}
    )
    assert gt.largest_micro_batch(probe, start=2, cap=8, deadline=math.inf)[0] == 8
    ticks = iter(range(100))  # a clock that advances one second per reading
    best, log = gt.largest_micro_batch(probe, start=1, cap=256, deadline=2.5, clock=lambda: next(ticks))
    assert best == 4 and len(log) == 3


def test_synthetic_source_fits_the_paper_presets_and_repeats_per_step() -> None:
    for name in gt.PRESETS:
        spec = get_preset(name)
        src = gt.SyntheticSource.for_spec(spec, pool=4)
        check_fits(spec, src)  # latents 4x32x32, 77 text tokens of 1024
        x0, text = src.global_batch(3, 2)
        assert x0.shape == (2, 4, 32, 32) and text.shape == (2, 77, 1024) and src.uncond.shape == (77, 1024)
    again = gt.SyntheticSource.for_spec(spec, pool=4).global_batch(3, 2)
    assert torch.equal(again[0], x0) and torch.equal(again[1], text)


def test_smoke_run_end_to_end(tmp_path, capsys) -> None:
    out = tmp_path / "smoke.json"
    before = gt.DEFAULT_OUT.stat().st_mtime_ns if gt.DEFAULT_OUT.exists() else None
    t0 = time.perf_counter()
    code, stdout, _ = run(["--smoke", "--out", str(out), "--peak-tflops", "0.1"], capsys)
    took = time.perf_counter() - t0
    assert code == 0
    res = json.loads(out.read_text())
    assert res["complete"] and res["smoke"] and res["device"] == ("cpu" if not CUDA else torch.cuda.get_device_name())
    assert set(res["mfu"]) == set(res["ratio_vs_plain"]) == set(gt.PRESETS)
    for name, r in res["presets"].items():
        assert r["micro_batch"] == 4 and [p["micro_batch"] for p in r["search"]] == [1, 2, 4]
        for loop in ("trainer", "plain"):
            f = r[loop]
            assert f["finite"] and len(f["rounds"]) == 2 and f["samples_per_s"] > 0
            assert f["tflops"] == pytest.approx(f["samples_per_s"] * r["train_tflop_per_sample"])
            assert f["mfu"] == pytest.approx(f["tflops"] / 0.1)
        assert res["mfu"][name] == r["trainer"]["mfu"] and 0 < r["ratio_vs_plain"] < 10
    td = res["td4_4_vs_sdxl"]
    assert 0 < td["gmacs_ratio"] < 1 and td["time_per_sample_ratio"] > 0
    assert "| sdxl-td4_4 |" in stdout and "time per sample" in stdout
    assert (gt.DEFAULT_OUT.stat().st_mtime_ns if gt.DEFAULT_OUT.exists() else None) == before  # bench/results untouched
    assert took < 60, f"smoke run took {took:.0f} s"  # ~20 s on 2 loaded cores


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--smoke"], ("--out", "required")),
        (["--smoke", "--out", "x.json", "--max-micro", "0"], ("--max-micro=0", "positive")),
        (["--smoke", "--out", "x.json", "--micro-start", "8", "--max-micro", "4"], ("--max-micro=4", "--micro-start")),
        (["--smoke", "--out", "x.json", "--presets", "sdxl,nope"], ("preset='nope'", "unknown preset")),
        (["--smoke", "--out", "x.json", "--peak-tflops", "nan"], ("--peak-tflops=nan", "positive")),
    ],
)
def test_bad_input_is_one_line_before_anything_runs(argv, needles, tmp_path, capsys, assert_one_line_error) -> None:
    argv = [str(tmp_path / a) if a == "x.json" else a for a in argv]
    assert_one_line_error(*run(argv, capsys), *needles, quiet=True)
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(CUDA, reason="checks the refusal on a machine without CUDA")
def test_without_cuda_the_real_run_is_refused(tmp_path, capsys, assert_one_line_error) -> None:
    assert_one_line_error(*run(["--out", str(tmp_path / "r.json")], capsys), "CUDA", "--smoke", quiet=True)


@pytest.mark.slow
def test_smoke_with_compile_channels_last_and_zero1(tmp_path, capsys) -> None:
    out = tmp_path / "levers.json"
    argv = [
        "--smoke",
        "--out",
        str(out),
        "--presets",
        "sd2",
        "--compile",
        "aot_eager",
        "--channels-last",
        "--zero",
        "1",
    ]
    assert run(argv, capsys)[0] == 0
    res = json.loads(out.read_text())
    assert res["settings"]["compile"] == "aot_eager" and res["settings"]["zero"] == 1
    assert res["presets"]["sd2"]["trainer"]["finite"]


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_gpu_measurement_of_a_paper_preset(tmp_path, capsys) -> None:
    out = tmp_path / "gpu.json"
    argv = [
        "--presets",
        "sd2",
        "--rounds",
        "2",
        "--steps",
        "2",
        "--max-micro",
        "64",
        "--search-s",
        "20",
        "--out",
        str(out),
    ]
    code, stdout, _ = run(argv, capsys)
    assert code == 0, stdout
    res = json.loads(out.read_text())
    r = res["presets"]["sd2"]
    assert res["device"] == torch.cuda.get_device_name() and res["settings"]["precision"] == "bf16"
    assert r["latent"] == [4, 32, 32] and r["text"] == [77, 1024] and r["micro_batch"] >= 8
    assert 0 < res["mfu"]["sd2"] < 1 and 0 < res["ratio_vs_plain"]["sd2"] < 10
    assert r["trainer"]["finite"] and r["plain"]["finite"] and r["peak_memory_gib"] > 0
