"""Bad input never shows a traceback: one line on stderr starting ``error:`` that names the file, field and value,
and exit code 2. Mostly in-process (``main([...])``), plus real subprocesses and a hypothesis test that mutates a
valid spec YAML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unetnas.presets import PRESETS

VALID = PRESETS["tiny"].model_dump(mode="json", exclude_none=True)


def _write(tmp_path: Path, data, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


# (changes to a valid tiny spec, strings the one-line message must contain besides the file name)
SPEC_ERRORS = {
    "unknown field": ({"channels": 32}, ["channels=32", "Extra inputs"]),
    "impossible value": ({"latent_size": 0}, ["latent_size=0", "greater than 0"]),
    "width vs norm groups": ({"base_channels": 20}, ["norm_num_groups=8", "20"]),
    "head dim": ({"head_dim": 24}, ["head_dim=24", "divide"]),
    "wrong list length": ({"layers_per_block": [1, 1]}, ["layers_per_block=[1, 1]", "one entry per level"]),
    "wrong type": ({"base_channels": "wide"}, ["base_channels='wide'"]),
    "bad literal": ({"attention": ["none", "full", "cross"]}, ["attention.1='full'"]),
    "mid tie": ({"mid_depth": 2}, ["mid_depth=2"]),
    "depth without attention": ({"transformer_depth": [3, 1, 1]}, ["transformer_depth[0]=3"]),
    "null list": ({"channel_mult": None}, ["channel_mult=None"]),
    "nested unknown": ({"addition_embed": {"time_dim": 8, "extra": 1}}, ["addition_embed.extra=1"]),
    "scalar channel_mult with shorthand layers": ({"channel_mult": 5, "layers_per_block": 2}, ["channel_mult=5"]),
    "null channel_mult with shorthand layers": ({"channel_mult": None, "layers_per_block": 2}, ["channel_mult"]),
    "absurdly large width": ({"base_channels": 32 * 10**200}, ["base_channels"]),
    "line break in an unknown key": ({"bad\rkey": 1, "other\u2028key": 2}, ["Extra inputs"]),
}


@pytest.mark.parametrize("case", list(SPEC_ERRORS))
def test_bad_spec_file(run_cli, assert_one_line_error, tmp_path, case):
    changes, needles = SPEC_ERRORS[case]
    path = _write(tmp_path, {**VALID, **changes})
    assert_one_line_error(*run_cli(["cost", str(path), "--json"]), str(path), *needles)


# unreadable files: (content as bytes or None for a directory, strings the message must contain)
FILE_ERRORS = {
    "directory": (None, ["directory"]),
    "binary garbage": (bytes(range(256)) * 4, []),
    "non-UTF8 text": ("name: caf\xe9\n".encode("latin-1"), ["utf-8"]),
    "NUL in text": (b"name: a\x00b\n", []),
    "list YAML": (b"- 1\n- 2\n", ["mapping", "list"]),
    "scalar YAML": (b"42\n", ["mapping", "int"]),
    "empty file": (b"", ["mapping"]),
    "broken YAML": (b"base_channels: [1\n", ["YAML", "line"]),
    "tab-indented YAML": (b"base_channels:\n\t- 1\n", ["YAML"]),
}


@pytest.mark.parametrize("case", list(FILE_ERRORS))
@pytest.mark.parametrize("command", ["cost", "space-show"])
def test_unreadable_file(run_cli, assert_one_line_error, tmp_path, case, command):
    content, needles = FILE_ERRORS[case]
    path = tmp_path / "thing.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    argv = ["cost", str(path), "--json"] if command == "cost" else ["space", "show", str(path)]
    assert_one_line_error(*run_cli(argv), str(path), *needles)


def test_missing_file_and_unknown_preset(run_cli, assert_one_line_error, tmp_path):
    missing = tmp_path / "nope.yaml"
    assert_one_line_error(*run_cli(["cost", str(missing), "--json"]), str(missing), "no such file")
    assert_one_line_error(*run_cli(["space", "show", str(missing)]), str(missing))
    assert_one_line_error(*run_cli(["export-config", str(missing), "--out", str(tmp_path / "o")]), str(missing))
    assert_one_line_error(*run_cli(["cost", "sdxl-typo"]), "preset='sdxl-typo'", "unknown preset")
    assert_one_line_error(*run_cli(["export-config", "sdxl-typo", "--out", str(tmp_path / "o")]), "sdxl-typo")
    assert not (tmp_path / "o").exists()


SPACE_ERRORS = {
    "unknown field": ({"colour": "blue"}, ["colour='blue'"]),
    "impossible width": ({"base_channels": [20]}, ["base_channels=20", "norm_num_groups"]),
    "too few levels": ({"levels": [{"transformer_depth": [0]}]}, ["levels"]),
    "searched field in base": ({"base": {"channel_mult": [1, 2]}}, ["base", "channel_mult"]),
    "wrong type": ({"mid_depth": "deep"}, ["mid_depth"]),
}


@pytest.mark.parametrize("case", list(SPACE_ERRORS))
@pytest.mark.parametrize("command", ["show", "sample"])
def test_bad_space_file(run_cli, assert_one_line_error, tmp_path, case, command):
    changes, needles = SPACE_ERRORS[case]
    data = {**yaml.safe_load(Path("space/tiny.yaml").read_text()), **changes}
    path = _write(tmp_path, data, "space.yaml")
    line = assert_one_line_error(*run_cli(["space", command, str(path)]), str(path), *needles)
    assert "Value error," not in line  # pydantic's wrapper text is not part of the rule


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["cost", "sdxl", "--resolution", "100"], ["resolution=100"]),
        (["cost", "sdxl", "--resolution", "-256"], ["resolution=-256"]),
        (["cost", "sdxl", "--text-len", "0"], ["text_len=0"]),
        (["cost", "sdxl", "--resolution", "abc"], ["--resolution", "integer"]),  # typer's message omits the value
        (["cost"], ["SPEC"]),
        (["cost", "sdxl", "--bogus"], ["--bogus"]),
        (["space", "sample", "space/tiny.yaml", "-n", "0"], ["-n", "1"]),
        (["no-such-command"], ["no-such-command"]),
    ],
    ids=[
        "resolution not a multiple",
        "negative resolution",
        "zero tokens",
        "non-integer flag",
        "missing argument",
        "unknown option",
        "zero samples",
        "unknown command",
    ],
)
def test_bad_flags(run_cli, assert_one_line_error, argv, needles):
    assert_one_line_error(*run_cli(argv), *needles)


# -- real processes ---------------------------------------------------------------------------------------------
def _unetnas(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("unetnas")
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"}
    )


def test_subprocess_unknown_field(tmp_path, assert_one_line_error):
    path = _write(tmp_path, {**VALID, "colour": "blue"})
    proc = _unetnas("cost", str(path), "--json")
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, str(path), "colour='blue'")
    assert proc.stdout == ""


def test_subprocess_unknown_preset(assert_one_line_error):
    proc = _unetnas("cost", "sdxl-typo", "--json")
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, "sdxl-typo")


def test_python_dash_m_entry_point():
    # `python -m unetnas.cli.app` runs the module as __main__; the commands must still be there
    proc = subprocess.run(
        [sys.executable, "-m", "unetnas.cli.app", "cost", "tiny", "--json"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-500:]
    assert "params" in json.loads(proc.stdout)


# -- hypothesis: mutate a valid spec YAML ---------------------------------------------------------------------
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-4, max_value=600),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(["none", "self", "cross", "sd", "if", "silu", "group_norm", ""]),
)
_value = st.one_of(
    _scalar,
    st.lists(_scalar, max_size=5),
    st.lists(st.integers(0, 8), max_size=5),
    st.dictionaries(st.text(max_size=5), _scalar, max_size=3),
)
_key = st.sampled_from(sorted(VALID))


@st.composite
def _mutated(draw) -> dict:
    data = dict(VALID)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["delete", "replace", "add", "truncate", "extend", "tweak"]))
        if op == "delete" and data:
            data.pop(draw(st.sampled_from(sorted(data))))
        elif op == "replace":
            data[draw(_key)] = draw(_value)
        elif op == "add":
            data[draw(st.text(min_size=1, max_size=12))] = draw(_value)
        elif op in ("truncate", "extend"):
            lists = sorted(k for k, v in data.items() if isinstance(v, list))
            if lists:
                k = draw(st.sampled_from(lists))
                data[k] = data[k][: draw(st.integers(0, 2))] if op == "truncate" else data[k] + data[k][-1:]
        else:  # small numeric changes keep the value plausible, so validators (not the parser) decide
            ints = sorted(k for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool))
            if ints:
                k = draw(st.sampled_from(ints))
                data[k] = data[k] + draw(st.integers(-40, 40))
    return data


def _strict_json(text: str):
    def reject(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=reject)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_mutated())
def test_mutated_spec_yaml_is_a_valid_spec_or_one_error_line(run_cli, assert_one_line_error, tmp_path_factory, data):
    path = tmp_path_factory.mktemp("mut") / "spec.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    code, out, err = run_cli(["cost", str(path), "--json"])
    if code == 0:
        assert err == ""
        result = _strict_json(out)
        assert {"params", "gmacs", "gflops", "train_gflops_per_sample", "attention_share"} <= set(result)
        assert result["params"] > 0
    else:
        assert_one_line_error(code, out, err, str(path))
