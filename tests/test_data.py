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
from unetnas.data.shards import _read_safetensors
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
    args = dict(
        out_dir=out,
        vae_path=inputs["vae"],
        text_encoder_path=inputs["bert"],
        images_dir=inputs["root"] / "imgs",
        resolution=32,
        shard_size=8,
        batch_size=4,
        progress=False,
    )
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
    for kw, field in [
        ({"resolution": 16}, "resolution"),
        ({"images_dir": imgs}, "inputs_sha256"),
        ({"text_max_length": 8}, "text_max_length"),
    ]:
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
    assert (
        error() == f"{shard}: is corrupt (sha256 differs from meta.json); delete it and rerun "
        "`unetnas data prepare` with the same arguments to rebuild it"
    )
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
        ({"manifest": manifest}, "give exactly one of --images DIR, --manifest FILE.jsonl or --shards TARS"),
        ({"images_dir": None}, "give exactly one of"),
        ({"shards": str(tmp_path / "nope-{0..1}.tar"), "images_dir": None}, "nope-0.tar: --shards: no such file"),
        ({"caption_column": "text"}, "--caption-column='text': applies to imagefolder metadata"),
        ({"resolution": 33}, "resolution=33: must be divisible by the VAE's downsampling factor 2"),
        ({"vae_path": inputs["bert"]}, "_class_name=None: must be a diffusers AutoencoderKL"),
    ]
    for kw, msg in cases:
        with pytest.raises(UserError, match=msg):
            run(inputs, tmp_path / "out", **kw)
    manifest.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(UserError, match="manifest.jsonl:2: is not valid JSON"):
        run(inputs, tmp_path / "out", images_dir=None, manifest=manifest)
    manifest.write_text(json.dumps({"image": "gone.png", "caption": "x"}))  # its only image is missing
    with pytest.raises(UserError, match=r"manifest.jsonl: no usable sample among the inputs \(1 missing image file"):
        run(inputs, tmp_path / "out", images_dir=None, manifest=manifest)


def test_cli_prepare(inputs, reference, tmp_path) -> None:
    app = typer.Typer()
    app.add_typer(data_app, name="data")
    args = [
        "data",
        "prepare",
        "--manifest",
        str(inputs["root"] / "imgs" / "manifest.jsonl"),
        "--vae",
        str(inputs["vae"]),
        "--text-encoder",
        str(inputs["bert"]),
        "--resolution",
        "32",
        "--out",
        str(tmp_path / "d"),
        "--shard-size",
        "8",
        "--batch-size",
        "4",
        "--no-progress",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "20 samples in 3 shards, latents 4x16x16, text 16x32" in result.output
    assert (tmp_path / "d" / SHARDS[2]).read_bytes() == (reference / SHARDS[2]).read_bytes()
    result = CliRunner().invoke(app, [*args, "--resolution", "16"])  # the last value of an option wins
    assert isinstance(result.exception, UserError) and "resolution=16" in str(result.exception)


# -- the formats people have, and bad items (issue 11 item 2) --------------------------------------------------------
def load_metadata(shard: Path) -> dict:
    return _read_safetensors(shard, None)[1]


def shard_tensors(out: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    ds = ShardDataset(out)
    return ds.latents, ds.text, ds.captions


def test_imagefolder_metadata_jsonl_and_csv_give_the_same_shards(inputs, reference, tmp_path) -> None:
    for name in ("metadata.jsonl", "metadata.csv", "renamed"):
        folder = tmp_path / name
        folder.mkdir()
        for path, _ in inputs["items"]:
            shutil.copy(path, folder / path.name)  # images only: the captions live in the metadata
        rows = [{"file_name": p.name, "text" if name != "renamed" else "prompt": c} for p, c in inputs["items"]]
        if name == "metadata.csv":
            (folder / name).write_text("file_name,text\n" + "".join(f"{r['file_name']},{r['text']}\n" for r in rows))
        else:
            (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        kw = {"caption_column": "prompt"} if name == "renamed" else {}
        meta = run(inputs, tmp_path / f"out-{name}", images_dir=folder, **kw)
        assert meta["inputs"] == "imagefolder" and meta["n_samples"] == 20 and meta["skipped"] == {}
        for shard in SHARDS:  # same keys (file names), same pixels, same captions: the same bytes
            assert (tmp_path / f"out-{name}" / shard).read_bytes() == (reference / shard).read_bytes()
    with pytest.raises(
        UserError,
        match=r"metadata.jsonl: caption_column=None: no caption column \(columns: "
        r"\['file_name', 'prompt'\]\); name it with --caption-column",
    ):
        run(inputs, tmp_path / "out-x", images_dir=tmp_path / "renamed")


def write_img2dataset_tars(items: list[tuple[Path, str]], folder: Path, per_tar: int = 12) -> list[Path]:
    """Tars laid out as img2dataset writes them: <key>.png + <key>.txt + <key>.json, keys 000000000.., ~per_tar a
    tar; every third sample keeps its caption only in the json, as img2dataset does without a caption column."""
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    tars = []
    for t in range(0, len(items), per_tar):
        tars.append(folder / f"{t // per_tar:05d}.tar")
        with wds.TarWriter(str(tars[-1])) as sink:
            for i, (path, caption) in enumerate(items[t : t + per_tar], start=t):
                sample = {
                    "__key__": f"{i:09d}",
                    "png": path.read_bytes(),
                    "json": json.dumps({"caption": caption, "key": f"{i:09d}", "status": "success"}),
                }
                if i % 3:
                    sample["txt"] = caption
                sink.write(sample)
    return tars


def test_webdataset_tars_stream_into_the_same_tensors(inputs, reference, tmp_path) -> None:
    write_img2dataset_tars(inputs["items"], tmp_path / "tars")
    meta = run(inputs, tmp_path / "out", images_dir=None, shards=str(tmp_path / "tars" / "{00000..00001}.tar"))
    assert (meta["inputs"], meta["n_inputs"], meta["n_samples"], len(meta["shards"])) == ("webdataset", None, 20, 3)
    got, want = shard_tensors(tmp_path / "out"), shard_tensors(reference)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]) and got[2] == want[2]
    index = json.loads(load_metadata(tmp_path / "out" / SHARDS[1])["index"])
    assert index["images"][0] == "00000.tar/000000008" and index["images"][-1] == "00001.tar/000000015"
    # a folder of tars is the same input
    again = run(inputs, tmp_path / "out2", images_dir=None, shards=str(tmp_path / "tars"))
    assert again["inputs_sha256"] == meta["inputs_sha256"]


def test_webdataset_resume_after_interruption(inputs, tmp_path, monkeypatch) -> None:
    write_img2dataset_tars(inputs["items"], tmp_path / "tars")
    args = dict(images_dir=None, shards=str(tmp_path / "tars"))
    run(inputs, tmp_path / "ref", **args)
    out, real_write = tmp_path / "out", prepare_mod.write_shard

    def die_on_second(path, *a):
        if path.name == SHARDS[1]:
            raise KeyboardInterrupt
        return real_write(path, *a)

    monkeypatch.setattr(prepare_mod, "write_shard", die_on_second)
    with pytest.raises(KeyboardInterrupt):
        run(inputs, out, **args)
    meta = json.loads((out / "meta.json").read_text())
    assert not meta["complete"] and len(meta["shards"]) == 1  # a stream of unknown length: the list grows
    monkeypatch.undo()
    run(inputs, out, **args)
    for name in SHARDS + ["uncond.safetensors", "meta.json"]:
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name


def test_bad_items_are_skipped_and_counted_never_fatal(inputs, tmp_path, run_cli) -> None:
    imgs = tmp_path / "imgs"
    shutil.copytree(inputs["root"] / "imgs", imgs)
    (imgs / "img-001.png").write_bytes(b"not a png")  # not an image
    (imgs / "img-009.png").write_bytes((imgs / "img-009.png").read_bytes()[:200])  # truncated
    (imgs / "img-012.txt").unlink()  # no caption
    (imgs / "sub").mkdir()
    (imgs / "sub" / "zz.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken jpeg")
    (imgs / "sub" / "zz.txt").write_text("a broken photo")
    meta = run(inputs, tmp_path / "out", images_dir=imgs)
    assert meta["complete"] and meta["n_samples"] == 17 and meta["n_inputs"] == 21
    assert meta["skipped"] == {"unreadable image": 3, "no caption (.txt file of the same stem)": 1}
    assert [r["count"] for r in meta["shards"]] == [7, 6, 4] and [r["inputs"] for r in meta["shards"]] == [8, 8, 5]
    entries = [e for r in meta["shards"] for e in r["skipped"]]
    assert [e[0] for e in entries] == ["img-001.png", "img-009.png", "img-012.png", "sub/zz.jpg"]
    assert all(len(e) == 3 and ":" in e[2] for e in entries if e[1] == "unreadable image")  # PIL's error kept
    ds = ShardDataset(tmp_path / "out")
    good = [c for p, c in inputs["items"] if p.name not in ("img-001.png", "img-009.png", "img-012.png")]
    assert ds.captions == good and len(ds) == 17
    # the same in a tar: a broken image member and a sample with neither txt nor json caption
    import webdataset as wds

    items = inputs["items"][:5]
    (tmp_path / "tars").mkdir()
    with wds.TarWriter(str(tmp_path / "tars" / "00000.tar")) as sink:
        for i, (path, caption) in enumerate(items):
            data = b"garbage" if i == 1 else path.read_bytes()
            sink.write({"__key__": f"{i:09d}", "png": data, **({"txt": caption} if i != 3 else {})})
    meta = run(inputs, tmp_path / "out-tar", images_dir=None, shards=str(tmp_path / "tars"))
    assert meta["n_samples"] == 3
    assert meta["skipped"] == {"unreadable image": 1, "no caption (txt, or json with a caption)": 1}
    # the command line says what was skipped
    code, out, err = run_cli(
        [
            "data",
            "prepare",
            "--images",
            str(imgs),
            "--vae",
            str(inputs["vae"]),
            "--text-encoder",
            str(inputs["bert"]),
            "--resolution",
            "32",
            "--shard-size",
            "8",
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    assert code == 0, err
    assert "17 samples in 3 shards" in out and "4 skipped (3 unreadable image, 1 no caption" in out
