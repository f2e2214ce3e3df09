"""The benchmark's equivalences, checked without timing anything: the generated lm-eval task
reads the same prompt text and tokens as promptcli, and the raw-forward floor does exactly
the model work promptcli's scorers do (same batches, rows and token positions)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import jinja2
import pytest
import torch

from conftest import write
from helpers import Pipeline, sentences

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.floor import causal_floor, mlm_floor  # noqa: E402
from bench.lmeval_task import NotExpressible, task_config, write_task  # noqa: E402
from bench.scenarios import SCENARIOS  # noqa: E402
from promptcli.evaluate import plan_batches  # noqa: E402

MIXED = {"negative": ["terrible", "dreadful"], "positive": ["great", "magnificent"]}


def target(config: dict, row: dict) -> str:
    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(config["doc_to_target"]).render(**row)


def test_task_for_the_causal_scenarios():
    config = task_config(str(SCENARIOS["b"].template), "dev.jsonl", "t")
    assert config["doc_to_text"] == "Review: {{ text }}\nAll in all, the movie was"
    assert config["doc_to_choice"] == [" terrible", " great"]  # the space before the slot moves into the choice
    assert config["target_delimiter"] == ""
    assert [target(config, {"label": v}) for v in ("negative", "positive", 0, 1)] == ["0", "1", "0", "1"]
    five = task_config(str(SCENARIOS["c"].template), "test.jsonl", "t")
    assert five["doc_to_choice"][1] == " not good at all"
    assert target(five, {"label": "very positive"}) == "4"


@pytest.mark.parametrize("text, labels, problem", [
    ("{{ text }} It was {{ mask }}.", {"negative": ["bad"], "positive": ["good"]}, "after the answer slot"),
    ("{{ text }} It was {{ mask }}", MIXED, "has 2 words"),
])
def test_templates_without_an_lm_eval_equivalent(tmp_path, text, labels, problem):
    write(tmp_path / "v.yaml", json.dumps({"labels": labels}))
    template = write(tmp_path / "t.yaml", json.dumps({"kind": "manual", "text": text, "verbalizer": "v.yaml"}))
    with pytest.raises(NotExpressible, match=problem):
        task_config(str(template), "d.jsonl", "t")


@pytest.mark.parametrize("name, text", [
    ("gpt2", "review : {{ text }} . it was {{ mask }}"),
    ("llama", "review : {{ text }} . it was {{ mask }}"),
    ("gpt2", "{{ text }} it was {{ mask }} ."),  # text after the slot: continuations = word + suffix
    ("roberta", "{{ text }} it was {{ mask }} ."),
    ("bert", "review : {{ text }} . it was {{ mask }}"),
])
def test_floor_does_the_model_work_of_promptcli(tiny, tmp_path, name, text):
    pipe = Pipeline(tmp_path, tiny[name], text, MIXED, sentences(24))
    batches = plan_batches(pipe.encoded, 8)
    scorer = pipe.scorer(batch_size=8)
    build = mlm_floor if pipe.loaded.kind == "mlm" else causal_floor
    floor = build(pipe.loaded.model, pipe.loaded.tokenizer, batches, 8, naive=False)
    with torch.inference_mode():
        for batch in batches:
            scorer.word_scores(batch)
        floor.step()
    assert (floor.positions, floor.sequences) == (scorer.positions, scorer.sequences)


def test_lm_eval_reads_the_same_prompts_and_tokens(tiny, tmp_path):
    pytest.importorskip("lm_eval")
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    rows = sentences(6)
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = "review : {{ text }} . it was {{ mask }}"
    pipe = Pipeline(tmp_path / "spec", tiny["gpt2"], text, {"negative": ["terrible"], "positive": ["great"]}, rows)
    write_task(tmp_path / "task", str(tmp_path / "spec" / "template.yaml"), str(data), "bench_check")
    task = TaskManager(include_path=str(tmp_path / "task"), include_defaults=False).load(["bench_check"])
    task = task["tasks"]["bench_check"]
    lm = HFLM(pretrained=tiny["gpt2"], batch_size=4, device="cpu", dtype="float32")
    docs = list(task.eval_docs)
    assert len(docs) == len(rows)
    for doc, enc in zip(docs, pipe.encoded):
        context = task.doc_to_text(doc)
        example = pipe.prepared.dataset.examples[enc.index]
        assert context == pipe.prepared.encoder.prompt(example.fields, [], "").prefix.rstrip()
        assert task.doc_to_target(doc) == ["negative", "positive"].index(doc["label"])
        for choice, word in zip(task.doc_to_choice(doc), enc.words.ids):
            ctx_ids, cont_ids = lm._encode_pair(context, task.config.target_delimiter + choice)
            assert (tuple(ctx_ids), tuple(cont_ids)) == (enc.context, word)
