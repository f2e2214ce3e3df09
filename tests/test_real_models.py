"""The real-model tier (`-m real`): the embedded pretrained models, on real benchmark data.

Margins are set to catch a broken scorer, not to chase the last point: a scorer that lost the
label words, the calibration or the chat layout drops to the majority class (about 51% on SST-2).
Skipped, with the install command, where a model's package is not installed.
"""
from __future__ import annotations

import json
import time

import pytest

import promptcli
import promptcli.models.gguf as gguf
import promptcli.models.info as models
from conftest import REPO, shared_path, write
from promptcli.models.embedded import MODELS
from promptcli.tuning.tuner import tune

pytestmark = pytest.mark.real
GEMMA, SMOL = "gemma-3-270m", "smollm2-135m-instruct"


def needs(name: str) -> str:
    if not MODELS[name].installed:
        pytest.skip(f"{name} is not installed ({MODELS[name].install})")
    return name


def sst2_dev_accuracy(template: str, model: str, tmp_path, **options) -> float:
    result = promptcli.run(REPO / template, shared_path("data", "sst2", "dev.jsonl"), needs(model),
                           out=tmp_path / "run", progress=False, **options)
    assert result.metrics["n"] == 872
    return result.accuracy


def test_gemma_calibrated_causal_template_on_sst2_dev(tmp_path):
    assert sst2_dev_accuracy("templates/sst2/causal.yaml", GEMMA, tmp_path) >= 0.70


def test_smollm2_chat_template_on_sst2_dev(tmp_path):
    assert sst2_dev_accuracy("templates/sst2/chat.yaml", SMOL, tmp_path) >= 0.65


@pytest.mark.parametrize("name", [GEMMA, SMOL])
def test_the_converted_model_is_cached_and_a_gguf_path_equals_the_short_name(name, tmp_path, monkeypatch):
    """The first use converts (or finds the conversion); a later process reads the folder without
    converting; the package's .gguf file given as a path is the same model, with the same predictions."""
    model = MODELS[needs(name)]
    models._RESOLVED.clear()
    start = time.perf_counter()
    folder = model.folder(progress=False)
    first_s = time.perf_counter() - start
    assert gguf.cached_entry(folder) is not None

    def no_conversion(_gguf):
        raise AssertionError("converted again instead of reading the cache")

    monkeypatch.setattr(gguf, "_load_model", no_conversion)
    models._RESOLVED.clear()
    by_name = promptcli.run(REPO / "templates/sst2/causal.yaml", REPO / "examples/sst2.jsonl", name,
                            out=tmp_path / "a", progress=False, cache=False)
    models._RESOLVED.clear()
    gguf_file = model.materialize(tmp_path)
    by_file = promptcli.run(REPO / "templates/sst2/causal.yaml", REPO / "examples/sst2.jsonl", str(gguf_file),
                            out=tmp_path / "b", progress=False, cache=False)
    assert [p.probs for p in by_name.predictions] == [p.probs for p in by_file.predictions]
    assert by_name.record.model["gguf"]["sha256"] == by_file.record.model["gguf"]["sha256"]
    assert by_name.record.hashes["model"] == by_file.record.hashes["model"]
    print(f"{name}: resolved in {first_s:.1f} s")


@pytest.mark.parametrize("name", [GEMMA, SMOL])
def test_tune_trains_a_prompt_on_each_embedded_model(name, tmp_path):
    """Gemma 3 once crashed here (a 0-dim buffer in the frozen-weight hash)."""
    rows = [json.loads(line) for line in (REPO / "examples/sst2.jsonl").read_text().splitlines()[:16]]
    train = write(tmp_path / "train.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    result = tune(REPO / "templates/sst2/causal.yaml", train, needs(name), out=tmp_path / "prompt",
                    progress=False, virtual_tokens=4, epochs=1, batch_size=8, lr=0.1)
    manifest = result.manifest
    assert manifest.parameters["trainable"] == 4 * models.load_info(name).config.hidden_size
    assert (result.out_dir / "adapter_model.safetensors").exists()


def test_search_words_on_gemma_finds_sentiment_words_from_16_examples_each(tmp_path):
    """On SST-2's 16-shot split (seed 13): what the search claims for its words is what `run` measures on
    those rows, and the words it proposes for each label include words of that sentiment."""
    train = shared_path("data", "sst2", "train-16-13.jsonl")
    found = promptcli.search_words(REPO / "templates/sst2/causal.yaml", train, needs(GEMMA), out=tmp_path / "found",
                                   progress=False)
    best = found.found[0]
    assert best.cv >= 0.75 and found.rows == 32
    again = promptcli.run(REPO / "templates/sst2/causal.yaml", train, GEMMA, verbalizer=str(best.path),
                          out=tmp_path / "run", progress=False)
    assert again.accuracy == pytest.approx(best.train)
    assert {"bad", "poor", "terrible", "negative"} & set(found.candidates["negative"])
    assert {"beautiful", "excellent", "brilliant", "positive", "great"} & {w.lower() for w in found.candidates["positive"]}
