"""TextEncoder (packaged MiniLM and tiny real models loaded by path) and TextCache."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from tiny_models import tiny_bert, tiny_clip, tiny_clip_text, tiny_vae

from unetnas.errors import UserError
from unetnas.text import PACKAGED_NAME, TextCache, TextEncoder

CAPTIONS = ["a red circle", "a blue square on the left", ""]


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return TextEncoder.load()


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("bert"))


def test_minilm_token_states(minilm: TextEncoder) -> None:
    assert (minilm.name, minilm.dim, minilm.max_length) == (PACKAGED_NAME, 384, 16)
    states = minilm.encode(CAPTIONS)
    assert states.shape == (3, 16, 384) and states.dtype == torch.float32
    assert torch.equal(states, minilm.encode(CAPTIONS))  # deterministic
    alone = minilm.encode(CAPTIONS[:1])  # batch composition does not change a caption's states
    torch.testing.assert_close(alone[0], states[0], atol=1e-5, rtol=1e-5)
    assert not minilm.model.training and not any(p.requires_grad for p in minilm.model.parameters())
    # The states feed autograd graphs downstream (cross-attention weights get gradients through them).
    torch.nn.Linear(384, 2)(states).sum().backward()
    assert minilm.encode([]).shape == (0, 16, 384)


def test_minilm_flops_count_matmul_params_only(minilm: TextEncoder) -> None:
    assert minilm.params == 22_713_216  # all-MiniLM-L6-v2
    assert minilm.matmul_params < minilm.params / 2 + 1_000_000  # half of MiniLM is its embedding tables
    assert minilm.text_flops_per_caption == 2 * minilm.matmul_params * 16


def test_cache_encodes_each_caption_once(minilm: TextEncoder, monkeypatch, tmp_path) -> None:
    calls: list[list[str]] = []
    encode = minilm.encode
    monkeypatch.setattr(minilm, "encode", lambda caps, **kw: calls.append(list(caps)) or encode(caps, **kw))
    cache = TextCache(minilm)
    got = cache.get(["a cat", "", "a cat", "a dog"])
    assert calls == [["a cat", "", "a dog"]] and cache.encoded == 3 and len(cache) == 3
    assert torch.equal(got[0], got[2]) and got.shape == (4, 16, 384)
    again = cache.get(["a dog", ""])
    assert len(calls) == 1 and torch.equal(again[0], got[3])
    cache.save(tmp_path / "cache.safetensors")
    loaded = TextCache.load(tmp_path / "cache.safetensors", minilm)
    assert torch.equal(loaded.get(["a cat", "", "a dog"]), cache.get(["a cat", "", "a dog"]))
    assert loaded.encoded == 0 and len(calls) == 1
    offline_cache = TextCache.load(tmp_path / "cache.safetensors")  # no encoder: cached captions only
    assert torch.equal(offline_cache.get([""]), got[1:2])
    with pytest.raises(KeyError):
        offline_cache.get(["never seen"])


def test_cache_rejects_another_encoder(minilm: TextEncoder, bert_dir, tmp_path) -> None:
    cache = TextCache(minilm)
    cache.get([""])
    cache.save(tmp_path / "c.safetensors")
    with pytest.raises(UserError, match="different text encoder"):
        TextCache.load(tmp_path / "c.safetensors", TextEncoder.load(bert_dir))
    from safetensors.torch import save_file  # early layout: three metadata keys; still readable

    v1 = {"format": "unetnas.text-cache/1", "captions": '[""]', "signature": json.dumps(minilm.signature())}
    save_file({"states": cache.get([""])}, str(tmp_path / "v1.safetensors"), metadata=v1)
    assert torch.equal(TextCache.load(tmp_path / "v1.safetensors", minilm).get([""]), cache.get([""]))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="junk.safetensors: is not a text cache file"):
        TextCache.load(tmp_path / "junk.safetensors")


@pytest.mark.parametrize(
    "build",
    [tiny_bert, tiny_clip_text, lambda d: tiny_clip_text(d, projection=True), tiny_clip],
    ids=["bert", "clip-text", "clip-text-projection", "clip-full"],
)
def test_models_by_path(build, tmp_path) -> None:
    enc = TextEncoder.load(build(tmp_path / "m"), max_length=12)
    states = enc.encode(["a red dog!", "the green square", ""])
    assert states.shape == (3, 12, 32) and enc.dim == 32 and enc.name == str((tmp_path / "m").resolve())
    assert torch.equal(states, enc.encode(["a red dog!", "the green square", ""]))


def test_pipeline_layout(tmp_path) -> None:
    """A diffusers pipeline root: <root>/text_encoder (model) beside <root>/tokenizer."""
    te = tiny_clip_text(tmp_path / "pipe" / "text_encoder")
    (tmp_path / "pipe" / "tokenizer").mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.move(te / f, tmp_path / "pipe" / "tokenizer" / f)
    assert TextEncoder.load(tmp_path / "pipe", max_length=8).encode(["a cat"]).shape == (1, 8, 32)


def test_load_errors_are_one_line(tmp_path, bert_dir) -> None:
    (tmp_path / "empty").mkdir()
    cases = {
        tmp_path / "nope": "does not exist",
        tmp_path / "empty": "holds no config.json",
        tiny_vae(tmp_path / "vae"): "config.json has no model_type",
    }
    (tmp_path / "notok").mkdir()
    shutil.copy(bert_dir / "config.json", tmp_path / "notok")
    shutil.copy(bert_dir / "model.safetensors", tmp_path / "notok")
    cases[tmp_path / "notok"] = "holds no tokenizer files"
    for path, rule in cases.items():
        with pytest.raises(UserError) as err:
            TextEncoder.load(path)
        assert str(path) in str(err.value) and rule in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match=r"max_length=65: must be an integer in \[2, 64\]"):
        TextEncoder.load(bert_dir, max_length=65)
