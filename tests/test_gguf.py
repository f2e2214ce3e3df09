"""GGUF models: converted once into a cached folder, identical to the model they were written from,
bad files and a damaged cache met with clear errors or a rebuild; embedded models by short name."""
from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest

import promptcli
import promptcli.models.embedded as embedded
import promptcli.models.gguf as gguf
import promptcli.models.info as models
from conftest import REPO, write
from test_cli import CAUSAL, EXAMPLES, cli
from promptcli.models.gguf_file import sha256_file
from tinygguf import reference_llama, write_tiny_gguf, write_truncated_gguf, write_unsupported_arch_gguf


@pytest.fixture(autouse=True)
def fresh_resolution():
    """Each test sees its own model cache (PROMPTCLI_HOME is per test): forget this process's lookups."""
    models._RESOLVED.clear()
    yield
    models._RESOLVED.clear()


@pytest.fixture
def tiny_gguf(tmp_path) -> Path:
    return write_tiny_gguf(tmp_path / "gguf" / "tiny.gguf")


@pytest.fixture
def reference(tmp_path) -> str:
    """The HF folder the tiny GGUF was written from."""
    model, tokenizer = reference_llama(0)
    folder = tmp_path / "reference"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def probs(result) -> list[dict]:
    return [p.probs for p in result.predictions]


def test_a_gguf_file_gives_the_predictions_of_the_model_it_was_written_from(tiny_gguf, reference, tmp_path):
    from_gguf = promptcli.run(CAUSAL, EXAMPLES, str(tiny_gguf), out=tmp_path / "a", progress=False, cache=False)
    from_hf = promptcli.run(CAUSAL, EXAMPLES, reference, out=tmp_path / "b", progress=False, cache=False)
    assert probs(from_gguf) == probs(from_hf)  # F32 file: the very same weights and token ids
    record = json.loads((tmp_path / "a/run.json").read_text())
    assert record["model"]["name"] == str(tiny_gguf)
    assert record["model"]["gguf"] == {"file": str(tiny_gguf.resolve()), "sha256": sha256_file(tiny_gguf),
                                       "size": tiny_gguf.stat().st_size, "architecture": "llama",
                                       "quantization": "ALL_F32"}
    assert Path(record["model"]["path"]).parent == gguf.model_cache_dir()


def test_the_second_load_reads_the_cache_and_a_folder_with_one_gguf_is_the_same(tiny_gguf, tmp_path, monkeypatch):
    first = promptcli.run(CAUSAL, EXAMPLES, str(tiny_gguf), out=tmp_path / "a", progress=False, cache=False)
    models._RESOLVED.clear()

    def no_conversion(_gguf):
        raise AssertionError("converted again instead of reading the cache")

    monkeypatch.setattr(gguf, "_load_model", no_conversion)
    again = promptcli.run(CAUSAL, EXAMPLES, str(tiny_gguf.parent), out=tmp_path / "b", progress=False, cache=False)
    assert probs(again) == probs(first)
    assert len(gguf.cache_entries()) == 1


@pytest.mark.parametrize("damage", ["truncate weights", "flip a byte", "no marker", "drop a file"])
def test_a_damaged_cache_entry_is_rebuilt_never_used(tiny_gguf, tmp_path, damage, capsys):
    first = promptcli.run(CAUSAL, EXAMPLES, str(tiny_gguf), out=tmp_path / "a", progress=False, cache=False)
    folder = Path(first.record.model["path"])
    weights = folder / "model.safetensors"
    if damage == "truncate weights":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "flip a byte":
        data = bytearray(weights.read_bytes())
        data[-5] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "no marker":
        (folder / gguf.MARKER).unlink()
    else:
        (folder / "tokenizer.json").unlink()
    assert gguf.cached_entry(folder) is None
    models._RESOLVED.clear()
    again = promptcli.run(CAUSAL, EXAMPLES, str(tiny_gguf), out=tmp_path / "b", progress=False, cache=False)
    assert probs(again) == probs(first)
    assert gguf.cached_entry(folder) is not None
    assert "incomplete or damaged; converting it again" in capsys.readouterr().err


def test_a_half_written_conversion_leaves_nothing_behind(tiny_gguf, monkeypatch):
    def interrupted(_gguf):
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf, "_load_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        models.resolve_model(str(tiny_gguf), progress=False)
    assert not gguf.model_cache_dir().exists() or not any(gguf.model_cache_dir().iterdir())


def test_quantized_gguf_records_its_type_and_its_own_fingerprint(tmp_path):
    f32 = models.load_info(str(write_tiny_gguf(tmp_path / "a" / "m.gguf")))
    q8 = models.load_info(str(write_tiny_gguf(tmp_path / "b" / "m.gguf", quantize=True)))
    assert (f32.source["quantization"], q8.source["quantization"]) == ("ALL_F32", "Q8_0")
    assert f32.fingerprint() != q8.fingerprint()
    assert f32.config_sha256 == q8.config_sha256  # same architecture: only the fingerprint tells them apart


@pytest.mark.parametrize("bad,message", [
    ("truncated", "is truncated: its tensors need"),
    ("arch", "a GGUF of architecture 'rwkv6', which transformers cannot load"),
    ("not gguf", "is not a readable GGUF file: it does not start with the GGUF magic bytes"),
    ("two files", "holds 2 .gguf files"),
    ("missing", "no model folder or file"),
])
def test_bad_gguf_files_are_clear_errors(tmp_path, bad, message):
    folder = tmp_path / "m"
    path = folder / "m.gguf"
    if bad == "truncated":
        write_truncated_gguf(path)
    elif bad == "arch":
        write_unsupported_arch_gguf(path)
    elif bad == "not gguf":
        write(path, "hello, I am not a model\n" * 10)
    elif bad == "two files":
        write_tiny_gguf(path)
        write_tiny_gguf(folder / "other.gguf", seed=1)
        path = folder
    result = cli("run", CAUSAL, "--data", EXAMPLES, "--model", path, "--out", tmp_path / "o", "--quiet")
    assert result.exit_code == 4, result.output
    assert message in result.stderr
    if bad == "arch":
        assert "llama" in result.stderr and "gemma3" in result.stderr  # the architectures it does load
    assert not (tmp_path / "o").exists()


def test_a_missing_gguf_package_names_the_install_command(tiny_gguf, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    result = cli("render", CAUSAL, "--data", EXAMPLES, "--model", tiny_gguf)
    assert result.exit_code == 4 and "needs the 'gguf' package, not installed here" in result.stderr
    assert "pip install gguf" in result.stderr


@pytest.fixture
def fake_embedded(tiny_gguf, monkeypatch) -> embedded.EmbeddedModel:
    """The default embedded model, served by the tiny GGUF (its real package is a 250 MB download)."""
    fake = replace(embedded.MODELS[embedded.DEFAULT], module="tinygguf", materialize=lambda _tmp: tiny_gguf,
                   known_sha256=lambda: None)
    monkeypatch.setitem(embedded.MODELS, embedded.DEFAULT, fake)
    return fake


def test_a_short_name_and_its_gguf_give_identical_predictions(fake_embedded, tiny_gguf, tmp_path, monkeypatch):
    """One conversion serves both: the cache is keyed by the file's hash, not by the name it was given."""
    by_name = promptcli.run(CAUSAL, EXAMPLES, embedded.DEFAULT, out=tmp_path / "a", progress=False, cache=False)
    monkeypatch.setattr(gguf, "_load_model", lambda _gguf: pytest.fail("converted again under another name"))
    models._RESOLVED.clear()
    by_file = promptcli.run(CAUSAL, EXAMPLES, str(tiny_gguf), out=tmp_path / "b", progress=False, cache=False)
    assert probs(by_name) == probs(by_file)
    assert by_name.record.model["gguf"]["file"].endswith(f": {fake_embedded.gguf_name}")
    assert by_name.record.hashes["model"] == by_file.record.hashes["model"]
    assert len(gguf.cache_entries()) == 1


def test_a_template_naming_no_model_runs_the_embedded_default(fake_embedded, tmp_path):
    template = write(tmp_path / "t.yaml", "kind: manual\ntext: 'Review: {{ text }} It was {{ mask }}'\n"
                     f"verbalizer: {REPO / 'verbalizers/sst2.yaml'}\n")
    result = cli("run", template, "--data", EXAMPLES, "--out", tmp_path / "o", "--quiet", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o/run.json").read_text())["model"]["name"] == embedded.DEFAULT


def test_an_embedded_model_not_installed_is_an_error_with_the_install_command(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in {m.module for m in embedded.MODELS.values()} else real(name, *a))
    for name, model in embedded.MODELS.items():
        result = cli("run", CAUSAL, "--data", EXAMPLES, "--model", name, "--out", tmp_path / name, "--quiet")
        assert result.exit_code == 4 and f"the embedded model '{name}' is not installed" in result.stderr
        assert model.install in result.stderr
    template = write(tmp_path / "t.yaml", "kind: manual\ntext: '{{ text }} {{ mask }}'\n"
                     f"verbalizer: {REPO / 'verbalizers/sst2.yaml'}\n")
    result = cli("run", template, "--data", EXAMPLES, "--out", tmp_path / "o", "--quiet")
    assert result.exit_code == 4 and "the default model 'gemma-3-270m' is not installed" in result.stderr


def test_models_lists_converts_and_removes(fake_embedded, tiny_gguf):
    listed = json.loads(cli("models", "list", "--format", "json").stdout)
    default = next(m for m in listed["models"] if m["name"] == embedded.DEFAULT)
    assert default["installed"] and default["default"] and default["converted"] is None
    assert {m["name"] for m in listed["models"]} == set(embedded.MODELS)
    converted = cli("models", "convert", embedded.DEFAULT)
    assert converted.exit_code == 0 and "ALL_F32" in converted.stdout
    listed = json.loads(cli("models", "list", "--format", "json").stdout)
    assert listed["cache"]["entries"][0]["complete"] and listed["cache"]["entries"][0]["bytes"] > 0
    table = cli("models")
    assert table.exit_code == 0 and "converted-model cache" in table.stdout
    assert cli("models", "rm", "nothing-like-this").exit_code == 1
    removed = cli("models", "rm", embedded.DEFAULT)
    assert removed.exit_code == 0 and "removed" in removed.stdout
    assert gguf.cache_entries() == []
