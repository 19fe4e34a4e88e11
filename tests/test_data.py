"""`prepare` end to end on tiny real models (20 PNGs, resolution 32, 3 shards), resume, and the shard reader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import typer
from tiny_models import tiny_bert, tiny_image_folder, tiny_vae
from typer.testing import CliRunner

import unetnas.data.prepare as prepare_mod
from unetnas.cli.data import data_app
from unetnas.data import ShardDataset
from unetnas.data.prepare import load_image, prepare
from unetnas.errors import UserError
from unetnas.text import TextEncoder

SHARDS = ["shard-00000.safetensors", "shard-00001.safetensors", "shard-00002.safetensors"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("inputs")
    items = tiny_image_folder(root / "imgs", n=20, size=(48, 40))
    (root / "imgs" / "manifest.jsonl").write_text(
        "\n".join(json.dumps({"image": p.name, "caption": c}) for p, c in items) + "\n"
    )
    return {"root": root, "items": items, "vae": tiny_vae(root / "vae"), "bert": tiny_bert(root / "bert")}


def run(inputs: dict, out: Path, **kw) -> dict:
    args = dict(out_dir=out, vae_path=inputs["vae"], text_encoder_path=inputs["bert"],
                images_dir=inputs["root"] / "imgs", resolution=32, shard_size=8, batch_size=4, progress=False)
    return prepare(**{**args, **kw})


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "data"
    run(inputs, out)
    return out


def snapshot(out: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.iterdir())}


def test_prepare_writes_what_the_models_compute(inputs, reference) -> None:
    meta = json.loads((reference / "meta.json").read_text())
    assert meta["complete"] and meta["n_samples"] == 20 and [s["count"] for s in meta["shards"]] == [8, 8, 4]
    assert sorted(p.name for p in reference.iterdir()) == sorted(SHARDS + ["meta.json", "uncond.safetensors"])
    ds = ShardDataset(reference)
    assert (len(ds), ds.latent_shape, ds.text_len, ds.text_dim) == (20, (4, 16, 16), 16, 32)
    assert ds.captions == [c for _, c in inputs["items"]]
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(inputs["vae"])
    pixels = torch.stack([load_image(p, 32) for p, _ in inputs["items"][17:19]])
    want = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor
    lat, text, caps = ds.take(torch.tensor([17, 18]))
    torch.testing.assert_close(lat, want, atol=2e-3, rtol=2e-3)  # stored as float16
    enc = TextEncoder.load(inputs["bert"])
    torch.testing.assert_close(text, enc.encode(caps), atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(ds.uncond, enc.encode([""])[0])


def test_batches_are_seeded_and_holdout_is_disjoint(reference) -> None:
    ds = ShardDataset(reference, holdout=4)
    a, b = (ds.batch(6, torch.Generator().manual_seed(1)) for _ in range(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2] and a[0].shape == (6, 4, 16, 16)
    assert not set(ds.train_indices.tolist()) & set(ds.holdout_indices.tolist()) and len(ds.train_indices) == 16
    fixed = ds.fixed_batch(3, seed=0)
    assert torch.equal(fixed[0], ds.fixed_batch(3, seed=0)[0])
    assert set(fixed[2]) <= {ds.captions[i] for i in ds.holdout_indices.tolist()}
    with pytest.raises(UserError, match=r"must be in \[1, 4\]"):
        ds.fixed_batch(5)


def test_manifest_gives_the_same_shards(inputs, reference, tmp_path) -> None:
    run(inputs, tmp_path / "m", images_dir=None, manifest=inputs["root"] / "imgs" / "manifest.jsonl")
    for name in SHARDS:
        assert (tmp_path / "m" / name).read_bytes() == (reference / name).read_bytes()


def test_resume_rebuilds_a_deleted_shard_identically(inputs, reference, tmp_path) -> None:
    out = tmp_path / "data"
    shutil.copytree(reference, out)
    before = snapshot(out)
    (out / SHARDS[-1]).unlink()
    run(inputs, out)
    after = snapshot(out)
    assert after[SHARDS[-1]][0] == before[SHARDS[-1]][0]
    assert all(after[n] == before[n] for n in SHARDS[:-1])  # untouched: same bytes, same mtime


def test_resume_after_interruption(inputs, reference, tmp_path, monkeypatch) -> None:
    out, written = tmp_path / "data", []
    real_write = prepare_mod.write_shard

    def write_then_die(path, *args):
        if written:  # the second shard: leave a half-written tmp file, as a killed process would
            path.with_name(path.name + ".tmp").write_bytes(b"partial")
            raise KeyboardInterrupt
        written.append(path)
        return real_write(path, *args)

    monkeypatch.setattr(prepare_mod, "write_shard", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(inputs, out)
    meta = json.loads((out / "meta.json").read_text())
    assert not meta["complete"] and meta["shards"][0] is not None and meta["shards"][1:] == [None, None]
    with pytest.raises(UserError, match=r"incomplete \(1 of 3 shards\)"):
        ShardDataset(out)
    monkeypatch.undo()
    run(inputs, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())  # no *.tmp left
    for name in SHARDS + ["uncond.safetensors", "meta.json"]:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_mismatched_rerun_is_an_error_and_touches_nothing(inputs, reference, tmp_path) -> None:
    out = tmp_path / "data"
    shutil.copytree(reference, out)
    before = snapshot(out)
    imgs = tmp_path / "imgs"
    shutil.copytree(inputs["root"] / "imgs", imgs)
    (imgs / "img-003.txt").write_text("a purple circle")  # same files, one caption changed
    for kw, field in [({"resolution": 16}, "resolution"), ({"images_dir": imgs}, "inputs_sha256"),
                      ({"text_max_length": 8}, "text_max_length")]:
        with pytest.raises(UserError, match=f"meta.json: {field}=.*differs from the preparation"):
            run(inputs, out, **kw)
    assert snapshot(out) == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds no meta.json"):
        run(inputs, tmp_path / "other")


def test_reader_errors_name_the_file(reference, tmp_path) -> None:
    out = tmp_path / "data"
    shutil.copytree(reference, out)
    shard = out / SHARDS[1]
    data = shard.read_bytes()

    def error() -> str:
        with pytest.raises(UserError) as err:
            ShardDataset(out)
        assert "\n" not in str(err.value)
        return str(err.value)

    shard.write_bytes(data[:-100])
    assert error().startswith(f"{shard}: is corrupt")
    shard.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert error() == f"{shard}: is corrupt (sha256 differs from meta.json); delete it and rerun " \
        "`unetnas data prepare` with the same arguments to rebuild it"
    shard.unlink()
    assert error().startswith(f"{shard}: missing")
    (out / "meta.json").unlink()
    assert error().startswith(f"{out / 'meta.json'}: missing")
    with pytest.raises(UserError, match="does not exist"):
        ShardDataset(tmp_path / "nowhere")


def test_input_errors(inputs, tmp_path) -> None:
    imgs = tmp_path / "imgs"
    shutil.copytree(inputs["root"] / "imgs", imgs)
    manifest = imgs / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    cases = [
        ({"manifest": manifest}, "give exactly one of --images DIR or --manifest"),
        ({"images_dir": None}, "give exactly one of"),
        ({"resolution": 33}, "resolution=33: must be divisible by the VAE's downsampling factor 2"),
        ({"vae_path": inputs["bert"]}, "_class_name=None: must be a diffusers AutoencoderKL"),
    ]
    for kw, msg in cases:
        with pytest.raises(UserError, match=msg):
            run(inputs, tmp_path / "out", **kw)
    manifest.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(UserError, match="manifest.jsonl:2: is not valid JSON"):
        run(inputs, tmp_path / "out", images_dir=None, manifest=manifest)
    manifest.write_text(json.dumps({"image": "gone.png", "caption": "x"}))
    with pytest.raises(UserError, match="manifest.jsonl:1: image='gone.png': file does not exist"):
        run(inputs, tmp_path / "out", images_dir=None, manifest=manifest)
    (imgs / "img-004.txt").unlink()
    with pytest.raises(UserError, match="img-004.png: has no caption"):
        run(inputs, tmp_path / "out", images_dir=imgs)
    (imgs / "img-004.png").write_bytes(b"not a png")
    (imgs / "img-004.txt").write_text("broken")
    with pytest.raises(UserError, match="img-004.png: is not a readable image"):
        run(inputs, tmp_path / "out", images_dir=imgs)


def test_cli_prepare(inputs, reference, tmp_path) -> None:
    app = typer.Typer()
    app.add_typer(data_app, name="data")
    args = ["data", "prepare", "--manifest", str(inputs["root"] / "imgs" / "manifest.jsonl"), "--vae",
            str(inputs["vae"]), "--text-encoder", str(inputs["bert"]), "--resolution", "32", "--out",
            str(tmp_path / "d"), "--shard-size", "8", "--batch-size", "4", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "20 samples in 3 shards, latents 4x16x16, text 16x32" in result.output
    assert (tmp_path / "d" / SHARDS[2]).read_bytes() == (reference / SHARDS[2]).read_bytes()
    result = CliRunner().invoke(app, [*args, "--resolution", "16"])  # the last value of an option wins
    assert isinstance(result.exception, UserError) and "resolution=16" in str(result.exception)
