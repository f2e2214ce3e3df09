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
from promptcli.scoring.answers import TIE_RULE, AnswerMap, extract, normalise, vote
from promptcli.errors import RunError
from promptcli.scoring.generate import Decoding, Generator, sampling_probs
from promptcli.evaluation.metrics import path_summary, tie_summary
from promptcli.models.weights import load_model
from promptcli.evaluation.inputs import prepare
from promptcli.spec.runconfig import RunConfig
from promptcli.scoring import make_scorer
from promptcli.spec.runconfig import ScoringConfig
from promptcli.spec.loading import VerbalizerFile
from promptcli.spec.verbalizer import VerbalizerSpec
from promptcli.prompt.verbalizer import Verbalizer

DATA = str(REPO / "examples/sst2.jsonl")
VERB = {"labels": {"negative": ["terrible", "bad"], "positive": ["great"]}}


def verbalizer(spec: dict = VERB) -> Verbalizer:
    return Verbalizer(VerbalizerFile(spec=VerbalizerSpec(**spec), path=None, sha256=""))


def shipped(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


@pytest.mark.parametrize("text,expected", [
    ("It is bad. So the answer is Great.", "Great"),  # the last match is the final answer
    ("the answer is   terrible!", "terrible"),
    ("no answer here", None),
])
def test_pattern_extraction(text, expected):
    assert extract(text, re.compile(r"(?i)the answer is\W*(\w+)")) == expected


def test_a_nested_answer_is_read_through_not_cut_at_its_first_word():
    old = re.compile(r"(?i)the answer is\W*(\w+)")  # the pattern shipped before: `The answer is "The` → "The"
    assert extract('The answer is "The answer is great."', old) == "great"
    assert extract('So the answer is "the answer is "The answer is terrible"".', old) == "terrible"
    assert extract('The answer is "The answer is great." The answer is "The answer is bad."', old) == "bad"
    assert extract("so it was great.", re.compile(r"(\w+)\W*$")) == "great"  # an anchored pattern is unaffected
    assert extract("it was great", re.compile(r"(?i)great|terrible")) == "great"  # no group: the whole match


# what SmolLM2-135M-Instruct wrote on SST-2 (path → the label a reader sees, None: no label)
READINGS = [
    ('The answer to this question is "The answer is great."', "positive"),
    ('The answer is "The answer is great"\nThe answer is "The answer is terrible"', "negative"),
    ("The answer is good.", "positive"),
    ("The answer is bad.", "negative"),
    ('The answer is bad. "The answer is terrible" is a lie.\nThe answer is great.', "positive"),  # the last one
    ("The answer to the question is great.\nSolution: \nThe answer to the question is great.", "positive"),
    ("I think the answer is: **Positive**", "positive"),
    ("The answer is horrible.", "negative"),
    ("The answer is excellent.\nThe answer is", "positive"),  # a cut-off last sentence is no answer
    ("The answer is both great and terrible.", None),  # never guessed
    ("The answer is not great.", None),
    ('The reviewer provides one piece of advice and the answer is:', None),
    ("A) Great\nB) Terrible", None),
]


@pytest.mark.parametrize("text,label", READINGS)
def test_shipped_self_consistency_pattern_reads_what_a_person_reads(text, label):
    template = shipped("templates/sst2/self-consistency.yaml")
    answers = AnswerMap(verbalizer(template["verbalizer"]))  # inline: the words models write per label
    assert answers.label(extract(text, re.compile(template["answer_pattern"]))) == label


CHAT_READINGS = READINGS + [
    ("This review is negative.", "negative"),
    ("The review is negative, but the tone is not entirely negative. The answer is positive.", "positive"),
    ("The review is written in the negative and should be rewritten.", None),
    ("This review appears to be a mix of both positive and negative.", None),
    ("The reviewer is positive.", None),  # only "review is", not "reviewer is"
]


@pytest.mark.parametrize("text,label", CHAT_READINGS)
def test_shipped_chat_self_consistency_pattern(text, label):
    template = shipped("templates/sst2/self-consistency-chat.yaml")
    answers = AnswerMap(verbalizer(template["verbalizer"]))
    assert answers.label(extract(text, re.compile(template["answer_pattern"]))) == label


def test_the_benchmark_and_chat_templates_read_answers_like_the_shipped_template():
    plain, bench = shipped("templates/sst2/self-consistency.yaml"), shipped("bench/templates/sst2-self-consistency.yaml")
    assert bench["answer_pattern"] == plain["answer_pattern"] and bench["text"] == plain["text"]
    assert bench["verbalizer"] == plain["verbalizer"] == shipped("templates/sst2/self-consistency-chat.yaml")["verbalizer"]


def test_mapping_is_case_and_whitespace_insensitive_and_abstains_otherwise():
    answers = AnswerMap(verbalizer())
    assert answers.label("  GREAT. ") == "positive" and answers.label("Bad") == "negative"
    assert answers.label("okay") is None and answers.label(None) is None
    assert normalise(" “Really   Great!” ") == "really great"


@pytest.mark.parametrize("answers,pred,agreement,shares,tie", [
    (["positive", "negative", "positive", None, "positive"], "positive", 0.6, {"negative": 0.25, "positive": 0.75},
     False),
    (["positive", "negative"], "negative", 0.5, {"negative": 0.5, "positive": 0.5}, True),  # tie: verbalizer order
    ([None, "positive", None, "negative", None], "negative", 0.2, {"negative": 0.5, "positive": 0.5}, True),
    ([None, "positive", None, None, None], "positive", 0.2, {"negative": 0.0, "positive": 1.0}, False),
    ([None, None, None], None, 0.0, {"negative": 0.0, "positive": 0.0}, False),  # all abstain: no tie
])
def test_vote_and_tie_break(answers, pred, agreement, shares, tie):
    result = vote(answers, ["negative", "positive"])
    assert (result.pred, result.agreement, result.shares, result.tie) == (pred, agreement, shares, tie)


def test_path_and_tie_summaries():
    answers = [["positive", None, None], [None, None, None], ["negative", "negative", "positive"], []]
    assert path_summary(answers) == {"total": 9, "answered": 4, "abstained": 5, "coverage": 4 / 9}
    assert path_summary([]) == {"total": 0, "answered": 0, "abstained": 0, "coverage": 0.0}
    ties = tie_summary([True, False, True, True], ["negative", "positive", "negative", "positive"],
                       ["negative", "positive"], TIE_RULE, gold=["negative", "negative", "positive", "positive"])
    assert ties == {"count": 3, "rule": TIE_RULE, "given_to": {"negative": 2, "positive": 1}, "correct": 2}
    assert "correct" not in tie_summary([False], ["negative"], ["negative", "positive"], TIE_RULE)


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
    scorer = make_scorer(loaded, ScoringConfig(batch_size=8))
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


def sc_template(tmp_path, pattern: str = r"(\w+)\W*$", **extra) -> str:
    return cot_template(tmp_path, kind="self-consistency", samples=4, answer_trigger=None, answer_pattern=pattern,
                        decoding={"strategy": "sample", "temperature": 1.0, "top_k": 50, "max_new_tokens": 8},
                        **extra)


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
    assert m["paths"] == {"total": 32, "answered": 0, "abstained": 32, "coverage": 0.0}
    assert m["ties"]["count"] == 0
    line = json.loads((tmp_path / "o/predictions.jsonl").read_text().splitlines()[0])
    assert line["pred"] is None and line["abstained"] is True and len(line["reasoning"]) == 4
    assert line["tie"] is False


# canned paths per example (4 samples): what each reads as, and the expected vote
CANNED = [
    (["The answer is great.", "The answer is terrible.", "hmm", "The answer is"], "negative", True),  # 1-1 tie
    (["The answer is good.", "The answer is great.", "The answer is bad.", "no idea"], "positive", False),
    (["nothing", "nothing", "The answer is both.", "The answer is okay."], None, False),  # all abstain
    (["The answer is great.", 'The answer is "The answer is bad."', "x", "The answer is awful."], "negative", False),
    (["The answer is positive.", "The answer is negative.", "The answer is great.", "The answer is bad."],
     "negative", True),  # 2-2 tie
    (["The answer is great."] * 4, "positive", False),
]


def test_path_abstentions_and_ties_are_reported_end_to_end(tiny, tmp_path, monkeypatch):
    def canned(self, batch):
        return [list(CANNED[e.index][0]) for e in batch]

    monkeypatch.setattr(Generator, "generate", canned)
    plain = shipped("templates/sst2/self-consistency.yaml")
    template = sc_template(tmp_path, pattern=plain["answer_pattern"], verbalizer=plain["verbalizer"])
    result = promptcli.run(template, DATA, tiny["gpt2"], out=tmp_path / "o", limit=6,
                           progress=False, batch_size=4)
    assert [(p.pred, p.tie) for p in result.predictions] == [(pred, tie) for _, pred, tie in CANNED]
    lines = [json.loads(line) for line in (tmp_path / "o/predictions.jsonl").read_text().splitlines()]
    assert [line["tie"] for line in lines] == [tie for _, _, tie in CANNED]
    assert lines[3]["answers"] == ["positive", "negative", None, "negative"]
    m = json.loads((tmp_path / "o/metrics.json").read_text())
    # gold (examples/sst2.jsonl): positive, negative, positive, negative, positive, negative
    assert m["paths"] == {"total": 24, "answered": 16, "abstained": 8, "coverage": 16 / 24}
    assert (m["abstentions"], m["coverage"]) == (1, 5 / 6)  # example level: only row 2 has no answering path
    assert m["ties"] == {"count": 2, "rule": TIE_RULE, "given_to": {"negative": 2, "positive": 0}, "correct": 0}

    from rich.console import Console
    from promptcli.report.terminal import summary_table
    console = Console(record=True, width=120)
    console.print(summary_table(result))
    shown = console.export_text()
    assert "paths answered" in shown and "16 / 24 (66.67%)" in shown
    assert "path abstentions" in shown and "tied votes" in shown and TIE_RULE in shown


def test_generation_kinds_need_a_causal_model(tiny, tmp_path):
    with pytest.raises(RunError, match="needs a causal model.*masked LM, which supports the manual, co-star and xml"):
        promptcli.run(cot_template(tmp_path), DATA, tiny["bert"], out=tmp_path / "o", progress=False)


def test_decoding_flags_override_the_template(tiny, tmp_path):
    runs = [promptcli.run(cot_template(tmp_path), DATA, tiny["gpt2"], out=tmp_path / f"o{n}", limit=3, progress=False,
                          max_new_tokens=n) for n in (2, 6)]
    # one decoding call per new token after the first (the first comes with the prompt), the rest is equal
    assert runs[1].record.work["model_calls"] - runs[0].record.work["model_calls"] == 6 - 2
