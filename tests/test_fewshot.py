"""Few-shot demonstrations, the shared-prefix KV cache, and chat-format templates."""
from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import torch
import yaml

import promptcli
from conftest import EXAMPLE_ROWS, REPO, write
from helpers import count_model_work, sentences
from promptcli.spec.data import Example
from promptcli.prompt.demos import DemoSelector
from promptcli.errors import RunError, SpecError
from promptcli.scoring.labels import LabelDistribution
from promptcli.models.weights import load_model
from promptcli.evaluation.inputs import prepare
from promptcli.spec.runconfig import RunConfig
from promptcli.scoring import make_scorer
from promptcli.spec.runconfig import ScoringConfig
from promptcli.spec.template import DemonstrationsSpec

LABELS = ["negative", "neutral", "positive"]
WORDS = {"negative": "bad", "neutral": "okay", "positive": "good"}


def pool(n: int = 30) -> list[Example]:
    return [Example(index=i, line=i + 1, fields={"text": f"training review {i}"}, gold=LABELS[i % 3]) for i in range(n)]


def selector(select: str, count: int = 6, seed: int = 13, per_class: int | None = None, rows=None) -> DemoSelector:
    spec = DemonstrationsSpec(count=count, select=select, seed=seed, per_class=per_class)
    return DemoSelector(rows or pool(), spec, LABELS, WORDS, ["text"])


def query(text: str = "a new review", index: int = 0) -> Example:
    return Example(index=index, line=1, fields={"text": text}, gold="neutral")


def test_balanced_takes_labels_in_turn():
    demos = selector("balanced", count=7).select(query()).demos
    assert [d.label for d in demos] == LABELS * 2 + ["negative"]
    assert [d.word for d in demos][:3] == ["bad", "okay", "good"]
    per_class = selector("balanced", per_class=2).select(query()).demos
    assert Counter(d.label for d in per_class) == {label: 2 for label in LABELS}


@pytest.mark.parametrize("select", ["random", "balanced"])
def test_seeds_reproduce_and_differ(select):
    first = [d.fields["text"] for d in selector(select, seed=1).select(query()).demos]
    again = [d.fields["text"] for d in selector(select, seed=1).select(query()).demos]
    other = [d.fields["text"] for d in selector(select, seed=2).select(query()).demos]
    assert first == again and first != other
    # fixed strategies give every query the same demonstrations
    assert first == [d.fields["text"] for d in selector(select, seed=1).select(query("another")).demos]


@pytest.mark.parametrize("select", ["first", "random", "balanced", "similar"])
def test_the_query_is_never_its_own_demonstration(select):
    rows = pool()
    chooser = selector(select, count=len(rows), rows=rows)  # every training row is a candidate
    for row in rows:
        selection = chooser.select(row)
        assert all(d.fields["text"] != row.fields["text"] for d in selection.demos)
        assert selection.skipped_self == 1 and len(selection.demos) == len(rows) - 1


def test_similar_puts_the_nearest_last():
    rows = [Example(i, i + 1, {"text": t}, g) for i, (t, g) in enumerate([
        ("the soundtrack is loud", "negative"), ("a moving story about family", "positive"),
        ("boring plot and weak acting", "negative"), ("the acting is weak but the plot works", "neutral")])]
    demos = selector("similar", count=2, rows=rows).select(query("weak acting , boring plot")).demos
    assert [d.fields["text"] for d in demos] == ["the acting is weak but the plot works", "boring plot and weak acting"]


def fewshot_template(tmp_path, count: int = 4, select: str = "balanced", **extra) -> str:
    spec = {"kind": "manual", "text": "review : {{ text }}\nit was {{ mask }}",
            "verbalizer": {"labels": {"negative": ["terrible"], "positive": ["great"]}},
            "demonstrations": {"count": count, "select": select, "seed": 3, "separator": "\n\n"}, **extra}
    return str(write(tmp_path / "t.yaml", yaml.safe_dump(spec)))


def train_file(tmp_path, n: int = 40, short: bool = False):
    rows = sentences(n, seed=9)
    if short:  # so that 16 demonstrations fit the tiny models' 256 positions
        rows = [{"text": r["text"].split(" , ")[0][:12], "label": r["label"]} for r in rows]
    return write(tmp_path / "train.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def test_render_shows_the_demonstrations(tmp_path):
    rows = promptcli.render(fewshot_template(tmp_path), str(REPO / "examples/sst2.jsonl"), limit=1,
                            train=str(train_file(tmp_path)))
    text = rows[0]["text"]
    assert rows[0]["demonstrations"] == 4
    assert text.count("it was terrible") + text.count("it was great") == 4
    assert text.endswith("it was {{ mask }}") and text.count("review :") == 5


def test_demonstrations_need_training_data(tmp_path):
    with pytest.raises(RunError, match="--train"):
        promptcli.render(fewshot_template(tmp_path), str(REPO / "examples/sst2.jsonl"))
    assert promptcli.render(fewshot_template(tmp_path), str(REPO / "examples/sst2.jsonl"), shots=0)[0][
        "demonstrations"] == 0


def test_length_limit_drops_demonstrations_before_the_query(tiny, tmp_path):
    config = RunConfig(template=fewshot_template(tmp_path, count=8), data=str(REPO / "examples/sst2.jsonl"),
                       model=tiny["gpt2"], train=str(train_file(tmp_path)), max_length=90)
    prepared = prepare(config)
    assert any(e.dropped for e in prepared.encoded) and not any(e.truncated for e in prepared.encoded)
    for enc in prepared.encoded:
        assert enc.demos + enc.dropped == 8 and enc.length <= 90
        assert prepared.info.tokenizer.decode(list(enc.context)).endswith("it was")  # query and slot intact


def _score_all(prepared, loaded, prefix_cache: bool, batch_size: int = 8):
    scorer = make_scorer(loaded, ScoringConfig(batch_size=batch_size, prefix_cache=prefix_cache))
    seen, handle = count_model_work(loaded.model)
    out = {}
    try:
        with torch.inference_mode():
            shared = scorer.share_prefix([e.context for e in prepared.encoded])
            for start in range(0, len(prepared.encoded), batch_size):
                batch = prepared.encoded[start:start + batch_size]
                for enc, row in zip(batch, LabelDistribution(prepared.verbalizer)(scorer.word_scores(batch))):
                    out[enc.index] = row
    finally:
        handle.remove()
    return out, seen["positions"], shared


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_fixed_demonstrations_are_computed_once(tiny, tmp_path, name):
    config = RunConfig(template=fewshot_template(tmp_path, count=8), data=str(REPO / "examples/sst2.jsonl"),
                       model=tiny[name], train=str(train_file(tmp_path, short=True)))
    prepared = prepare(config)
    assert not any(e.dropped for e in prepared.encoded)
    loaded = load_model(prepared.info, device="cpu", dtype="float32")
    cached, cached_positions, shared = _score_all(prepared, loaded, prefix_cache=True)
    plain, plain_positions, none = _score_all(prepared, loaded, prefix_cache=False)
    assert none == 0 and shared > 60  # the 8 demonstrations
    for index, expected in plain.items():
        torch.testing.assert_close(cached[index], expected, atol=1e-4, rtol=0)
    contexts = sum(len(e.context) for e in prepared.encoded)
    assert plain_positions == contexts  # single-token words ending the text: contexts only
    assert cached_positions == shared + contexts - shared * len(prepared.encoded)


def test_fewshot_run_end_to_end_with_mlm(tiny, tmp_path):
    result = promptcli.run(str(REPO / "templates/sst5/manual-fewshot.yaml"), str(REPO / "examples/sst5.jsonl"),
                           tiny["bert"], out=tmp_path / "o", train=str(REPO / "examples/sst5.jsonl"), progress=False)
    demos = result.record.counts["demonstrations"]
    # train = test: the one query per label that equals that label's chosen row gets the next one instead
    assert demos["per_example"] == 5 and demos["query_skipped"] == 5
    assert result.record.hashes["train"]


def chat_template(tmp_path) -> str:
    spec = {"kind": "manual", "chat": True, "system": "You judge reviews.", "text": "Review: {{ text }}",
            "answer": "Verdict: {{ mask }}", "verbalizer": {"labels": {"negative": ["terrible"], "positive": ["great"]}},
            "demonstrations": {"count": 2, "select": "first"}}
    return str(write(tmp_path / "chat.yaml", yaml.safe_dump(spec)))


def test_chat_template_puts_the_slot_in_the_assistant_turn(tiny, tmp_path):
    prepared = prepare(RunConfig(template=chat_template(tmp_path), data=str(REPO / "examples/sst2.jsonl"),
                                 model=tiny["llama"], train=str(REPO / "examples/sst2.jsonl"), limit=1))
    example = prepared.dataset.examples[0]
    prompt = prepared.encoder.prompt(example.fields, prepared.selector.select(example).demos, "")
    # demonstrations: rows 1 and 2 (row 0 is the query itself, so it is skipped)
    assert prompt.prefix.startswith("<|system|>\nYou judge reviews.</s>\n<|user|>\nReview: a dull")
    assert prompt.prefix.rsplit("<|user|>", 1)[1].startswith("\nReview: a warm")
    assert prompt.prefix.count("<|assistant|>") == 3  # two demonstrations, then the query's turn
    assert "<|assistant|>\nVerdict: terrible</s>" in prompt.prefix  # a demonstration's answer
    assert prompt.prefix.endswith("<|assistant|>\nVerdict: ") and prompt.suffix == ""
    # a chat template writes its own special tokens: no BOS added on top
    assert prepared.encoded[0].context[0] != prepared.info.tokenizer.bos_token_id
    result = promptcli.run(chat_template(tmp_path), str(REPO / "examples/sst2.jsonl"), tiny["llama"],
                           out=tmp_path / "o", train=str(REPO / "examples/sst2.jsonl"), progress=False)
    assert result.metrics["n"] == EXAMPLE_ROWS


def test_chat_without_a_chat_template_is_a_clear_error(tiny, tmp_path):
    with pytest.raises(SpecError, match="no chat template") as info:
        promptcli.render(chat_template(tmp_path), str(REPO / "examples/sst2.jsonl"), model=tiny["gpt2"],
                         train=str(REPO / "examples/sst2.jsonl"))
    assert "chat: false" in str(info.value)
    with pytest.raises(RunError, match="pass --model"):
        promptcli.render(chat_template(tmp_path), str(REPO / "examples/sst2.jsonl"),
                         train=str(REPO / "examples/sst2.jsonl"))


def test_shuffled_order_gives_the_same_fewshot_scores(tiny, tmp_path):
    config = RunConfig(template=fewshot_template(tmp_path, count=4), data=str(REPO / "examples/sst2.jsonl"),
                       model=tiny["llama"], train=str(train_file(tmp_path, short=True)))
    prepared = prepare(config)
    loaded = load_model(prepared.info, device="cpu", dtype="float32")
    reference, _, _ = _score_all(prepared, loaded, prefix_cache=True, batch_size=1)
    random.Random(0).shuffle(prepared.encoded)
    shuffled, _, _ = _score_all(prepared, loaded, prefix_cache=True, batch_size=16)
    for index, expected in reference.items():
        torch.testing.assert_close(shuffled[index], expected, atol=1e-4, rtol=0)
