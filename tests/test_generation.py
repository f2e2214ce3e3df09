"""Chain-of-thought and self-consistency: extraction, voting, decoding, reproducibility, cost."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch
import yaml

import promptcli
from conftest import REPO, write
from helpers import count_model_work
from promptcli.answers import AnswerMap, extract, normalise, vote
from promptcli.errors import RunError
from promptcli.generate import Decoding, Generator, sampling_probs
from promptcli.models import load_model
from promptcli.runner import RunConfig, prepare
from promptcli.scoring import make_scorer
from promptcli.scoring.base import ScoringOptions
from promptcli.spec import VerbalizerSpec, VerbalizerFile
from promptcli.verbalizer import Verbalizer

DATA = str(REPO / "examples/sst2.jsonl")
VERB = {"labels": {"negative": ["terrible", "bad"], "positive": ["great"]}}


def verbalizer() -> Verbalizer:
    return Verbalizer(VerbalizerFile(spec=VerbalizerSpec(**VERB), path=None, sha256=""))


@pytest.mark.parametrize("text,expected", [
    ("It is bad. So the answer is Great.", "Great"),  # the last match is the final answer
    ("the answer is   terrible!", "terrible"),
    ("no answer here", None),
])
def test_pattern_extraction(text, expected):
    assert extract(text, re.compile(r"(?i)the answer is\W*(\w+)")) == expected


def test_mapping_is_case_and_whitespace_insensitive_and_abstains_otherwise():
    answers = AnswerMap(verbalizer())
    assert answers.label("  GREAT. ") == "positive" and answers.label("Bad") == "negative"
    assert answers.label("okay") is None and answers.label(None) is None
    assert normalise(" “Really   Great!” ") == "really great"


@pytest.mark.parametrize("answers,pred,agreement,shares", [
    (["positive", "negative", "positive", None, "positive"], "positive", 0.6, {"negative": 0.25, "positive": 0.75}),
    (["positive", "negative"], "negative", 0.5, {"negative": 0.5, "positive": 0.5}),  # tie: verbalizer order
    ([None, None, None], None, 0.0, {"negative": 0.0, "positive": 0.0}),  # all abstain
])
def test_vote_and_tie_break(answers, pred, agreement, shares):
    result = vote(answers, ["negative", "positive"])
    assert (result.pred, result.agreement, result.shares) == (pred, agreement, shares)


def test_sampling_filters_apply_top_k_then_top_p_then_temperature():
    log_probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    # top-k 3 → (0.5, 0.3, 0.15) renormalised to (.526, .316, .158); top-p 0.7 keeps the first two
    # (cumulative .526 < .7 ≤ .842); temperature 2 → p ∝ p^(1/2): (√.5, √.3) / (√.5 + √.3)
    probs = sampling_probs(log_probs, Decoding(strategy="sample", top_k=3, top_p=0.7, temperature=2.0))
    a, b = math.sqrt(0.5), math.sqrt(0.3)
    torch.testing.assert_close(probs, torch.tensor([[a / (a + b), b / (a + b), 0.0, 0.0]]))
    greedy_like = sampling_probs(log_probs, Decoding(strategy="sample", top_k=1))
    assert greedy_like.tolist() == [[1.0, 0.0, 0.0, 0.0]]


def cot_template(tmp_path, kind: str = "cot", **extra) -> str:
    spec = {"kind": kind, "text": "review : {{ text }}\nanswer : let us think .",
            "answer_trigger": "so the movie was {{ mask }}", "verbalizer": {"labels": {
                "negative": ["terrible"], "positive": ["great"]}},
            "decoding": {"strategy": "greedy", "max_new_tokens": 12}, **extra}
    return str(write(tmp_path / f"{kind}.yaml", yaml.safe_dump(spec)))


def generator_for(tiny, tmp_path, name: str, decoding: Decoding, limit: int = 6):
    prepared = prepare(RunConfig(template=cot_template(tmp_path), data=DATA, model=tiny[name], limit=limit))
    loaded = load_model(prepared.info, device="cpu", dtype="float32")
    scorer = make_scorer(loaded, ScoringOptions(batch_size=8))
    return prepared, loaded, Generator(loaded, scorer, decoding)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_batched_greedy_generation_equals_hf_generate(tiny, tmp_path, name):
    prepared, loaded, generator = generator_for(tiny, tmp_path, name, Decoding(max_new_tokens=10))
    with torch.inference_mode():
        ours = generator.generate(prepared.encoded)  # one batch, rows of different lengths
        for enc, texts in zip(prepared.encoded, ours):
            ids = torch.tensor([enc.context])
            out = loaded.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False,
                                        pad_token_id=generator.scorer.pad_id)
            expected = prepared.info.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
            assert texts == [expected]


def test_answer_trigger_scores_equal_brute_force_on_the_concatenated_text(tiny, tmp_path):
    result = promptcli.run(cot_template(tmp_path), DATA, tiny["gpt2"], out=tmp_path / "o", limit=6, progress=False)
    tok, model = None, None
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny["gpt2"])
    model = AutoModelForCausalLM.from_pretrained(tiny["gpt2"]).eval()
    rows = [json.loads(line) for line in open(DATA)][:6]
    for prediction in result.predictions:
        assert isinstance(prediction.reasoning, str)  # kept in predictions.jsonl
        text = (f"review : {rows[prediction.index]['text']}\nanswer : let us think ." + prediction.reasoning.rstrip()
                + "\nso the movie was")
        context = tok(text)["input_ids"]
        scores = []
        for word in ("terrible", "great"):
            full = tok(text + " " + word)["input_ids"]
            with torch.inference_mode():
                log_probs = model(torch.tensor([full])).logits[0].log_softmax(-1)
            scores.append(sum(float(log_probs[i - 1, full[i]]) for i in range(len(context), len(full))))
        expected = torch.tensor(scores).softmax(-1).tolist()
        assert prediction.probs["negative"] == pytest.approx(expected[0], abs=1e-4)
        assert prediction.pred == ("negative" if expected[0] > expected[1] else "positive")


def sc_template(tmp_path, pattern: str = r"(\w+)\W*$") -> str:
    return cot_template(tmp_path, kind="self-consistency", samples=4, answer_trigger=None, answer_pattern=pattern,
                        decoding={"strategy": "sample", "temperature": 1.0, "top_k": 50, "max_new_tokens": 8})


def test_self_consistency_reproduces_with_a_seed_and_resumes(tiny, tmp_path):
    template = sc_template(tmp_path)
    first = promptcli.run(template, DATA, tiny["llama"], out=tmp_path / "a", limit=10, seed=5, progress=False,
                          batch_size=3)
    second = promptcli.run(template, DATA, tiny["llama"], out=tmp_path / "b", limit=10, seed=5, progress=False,
                           batch_size=5)  # another batching: per-example generators give the same samples
    other = promptcli.run(template, DATA, tiny["llama"], out=tmp_path / "c", limit=10, seed=6, progress=False,
                          batch_size=3)
    a, b = (tmp_path / "a/predictions.jsonl").read_bytes(), (tmp_path / "b/predictions.jsonl").read_bytes()
    assert a == b
    assert [p.reasoning for p in first.predictions] != [p.reasoning for p in other.predictions]
    assert all(len(p.reasoning) == 4 and len(p.answers) == 4 for p in first.predictions)
    assert set(first.metrics["agreement"]["histogram"]) <= {"0.00", "0.25", "0.50", "0.75", "1.00"}
    assert second.metrics == first.metrics


def test_samples_share_the_prompt_prefill(tiny, tmp_path):
    counts = {}
    for samples in (1, 5):
        decoding = Decoding(strategy="sample", samples=samples, max_new_tokens=6, seed=1)
        prepared, loaded, generator = generator_for(tiny, tmp_path / str(samples), "gpt2", decoding)
        seen = {"prefill": 0, "decode": 0}

        def hook(module, args, kwargs):
            ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
            seen["prefill" if ids.shape[1] > 1 else "decode"] += int(mask[:, -ids.shape[1]:].sum())

        handle = loaded.model.register_forward_pre_hook(hook, with_kwargs=True)
        with torch.inference_mode():
            generator.generate(prepared.encoded)
        handle.remove()
        counts[samples] = seen | {"prefills": generator.scorer.prefills}
    contexts = sum(len(e.context) for e in prepared.encoded)
    assert counts[1]["prefill"] == counts[5]["prefill"] == contexts  # computed once, not once per sample
    assert counts[1]["prefills"] == counts[5]["prefills"] == len(prepared.encoded)  # as run.json reports it
    assert counts[5]["decode"] > 2 * counts[1]["decode"]  # the samples themselves are generated


def test_abstentions_are_counted_never_guessed(tiny, tmp_path):
    result = promptcli.run(sc_template(tmp_path, pattern="(?i)the answer is (\\w+)"), DATA, tiny["gpt2"],
                           out=tmp_path / "o", limit=8, progress=False)
    assert all(p.abstained and p.pred is None for p in result.predictions)  # random weights never say it
    m = result.metrics
    assert (m["abstentions"], m["coverage"], m["accuracy"], m["accuracy_answered"]) == (8, 0.0, 0.0, 0.0)
    line = json.loads((tmp_path / "o/predictions.jsonl").read_text().splitlines()[0])
    assert line["pred"] is None and line["abstained"] is True and len(line["reasoning"]) == 4


def test_generation_kinds_need_a_causal_model(tiny, tmp_path):
    with pytest.raises(RunError, match="needs a causal model.*masked LM, which supports the manual, co-star and xml"):
        promptcli.run(cot_template(tmp_path), DATA, tiny["bert"], out=tmp_path / "o", progress=False)


def test_decoding_flags_override_the_template(tiny, tmp_path):
    result = promptcli.run(cot_template(tmp_path), DATA, tiny["gpt2"], out=tmp_path / "o", limit=3, progress=False,
                           max_new_tokens=2)
    tok = prepare(RunConfig(template=cot_template(tmp_path), data=DATA, model=tiny["gpt2"], limit=1)).info.tokenizer
    assert all(len(tok(p.reasoning, add_special_tokens=False)["input_ids"]) <= 2 for p in result.predictions)
