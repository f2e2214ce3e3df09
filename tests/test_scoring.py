"""Scores are exact: independent of batching and order, equal to brute force, and cheap."""
from __future__ import annotations

import random

import pytest
import torch

from helpers import Pipeline, count_model_work, sentences
from promptcli.scoring.labels import combine

# Label words that are multi-token in the tiny vocabularies ("magnificent", "dreadful"),
# mixed with single-token ones, so every path of both scorers runs.
MIXED = {"negative": ["terrible", "dreadful"], "positive": ["great", "magnificent"]}
SINGLE = {"negative": ["terrible"], "positive": ["great"]}  # one token in the causal vocabularies
ALL = ["bert", "roberta", "gpt2", "llama"]


@pytest.fixture(scope="module")
def rows():
    return sentences(40)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("text", ["review : {{ text }} . it was {{ mask }}", "{{ text }} it was {{ mask }} ."])
def test_scores_do_not_depend_on_batch_size_or_order(tiny, tmp_path, rows, name, text):
    pipe = Pipeline(tmp_path, tiny[name], text, MIXED, rows)
    reference = pipe.label_log_probs(batch_size=1)
    shuffled = list(pipe.encoded)
    random.Random(7).shuffle(shuffled)
    for batch_size, order in [(8, None), (32, None), (8, shuffled), (32, shuffled)]:
        other = pipe.label_log_probs(batch_size, order)
        for index, expected in reference.items():
            torch.testing.assert_close(other[index], expected, atol=1e-4, rtol=0)
    # the probabilities are over the verbalizer's labels only
    for row in reference.values():
        assert row.shape == (2,) and abs(float(row.exp().sum()) - 1) < 1e-5


@pytest.mark.parametrize("name", ["bert", "roberta"])
@pytest.mark.parametrize("multi_token", ["mean", "sum", "first"])
def test_mlm_multi_token_words_equal_brute_force(tiny, tmp_path, rows, name, multi_token):
    pipe = Pipeline(tmp_path, tiny[name], "{{ text }} it was {{ mask }} .", MIXED, rows[:12], multi_token=multi_token)
    words = pipe.prepared.verbalizer.words
    tok = pipe.prepared.info.tokenizer
    lengths = {len(ids) for ids in pipe.encoded[0].words.ids}
    assert lengths != {1}, "the test needs multi-token label words"
    scores = pipe.word_scores(batch_size=8)
    model = pipe.loaded.model
    reduce = {"mean": torch.mean, "sum": torch.sum, "first": lambda t: t[0]}[multi_token]
    for enc, row in zip(pipe.encoded, pipe.prepared.dataset.examples):
        for w, word in enumerate(words):
            ids = enc.words.ids[w]
            # brute force: the full text with one mask per token, tokenised by the tokenizer itself
            text = f"{row.fields['text']} it was" + tok.mask_token * len(ids) + " ."
            full = tok(text)["input_ids"]
            assert full == list(enc.context + (tok.mask_token_id,) * len(ids) + enc.suffix)
            with torch.inference_mode():
                log_probs = model(input_ids=torch.tensor([full])).logits[0].log_softmax(-1)
            start = len(enc.context)
            token_lp = torch.stack([log_probs[start + i, t] for i, t in enumerate(ids)])
            torch.testing.assert_close(scores[enc.index][w], reduce(token_lp), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
@pytest.mark.parametrize("normalize", ["none", "tokens", "chars"])
def test_causal_scores_equal_full_sequence_log_likelihood(tiny, tmp_path, rows, name, normalize):
    pipe = Pipeline(tmp_path, tiny[name], "review : {{ text }} . it was {{ mask }} .", MIXED, rows[:12],
                    normalize=normalize)
    words = pipe.prepared.verbalizer.words
    tok = pipe.prepared.info.tokenizer
    scores = pipe.word_scores(batch_size=8)
    model = pipe.loaded.model
    for enc, row in zip(pipe.encoded, pipe.prepared.dataset.examples):
        for w, word in enumerate(words):
            continuation = f" {word} ."
            context = f"review : {row.fields['text']} . it was"
            full = tok(context + continuation)["input_ids"]
            n_context = len(tok(context)["input_ids"])
            assert full == list(enc.context + enc.words.ids[w] + enc.suffix)
            with torch.inference_mode():
                log_probs = model(input_ids=torch.tensor([full])).logits[0].log_softmax(-1)
            total = sum(log_probs[i - 1, full[i]] for i in range(n_context, len(full)))
            divisor = {"none": 1, "tokens": len(full) - n_context, "chars": len(continuation)}[normalize]
            torch.testing.assert_close(scores[enc.index][w], total / divisor, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_causal_cost_is_context_plus_continuations_minus_one(tiny, tmp_path, rows, name):
    pipe = Pipeline(tmp_path, tiny[name], "review : {{ text }} . it was {{ mask }} .", MIXED, rows[:10])
    scorer = pipe.scorer(batch_size=1)
    seen, handle = count_model_work(pipe.loaded.model)
    try:
        with torch.inference_mode():
            for enc in pipe.encoded:
                scorer.word_scores([enc])
    finally:
        handle.remove()
    bound = sum(len(e.context) + sum(len(w) + len(e.suffix) - 1 for w in e.words.ids) for e in pipe.encoded)
    assert seen["positions"] == bound  # P + Σ(L_k − 1), counted by a hook on the model
    assert scorer.positions == bound
    # the context is run once per example, not once per label
    naive = sum(len(e.context) * len(e.words.ids) for e in pipe.encoded)
    assert seen["positions"] < naive


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_models_whose_cache_cannot_be_split_get_the_same_scores(tiny, tmp_path, rows, name, monkeypatch):
    pipe = Pipeline(tmp_path, tiny[name], "review : {{ text }} . it was {{ mask }} .", MIXED, rows[:12])
    cached = pipe.word_scores(batch_size=4)
    monkeypatch.setattr("promptcli.scoring.causal.splittable", lambda cache: False)
    recomputed = pipe.word_scores(batch_size=4)
    for index, expected in cached.items():
        torch.testing.assert_close(recomputed[index], expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_single_token_words_ending_the_text_cost_one_forward(tiny, tmp_path, rows, name):
    pipe = Pipeline(tmp_path, tiny[name], "review : {{ text }} . it was {{ mask }}", SINGLE, rows[:10])
    assert all(len(ids) == 1 for ids in pipe.encoded[0].words.ids)
    seen, handle = count_model_work(pipe.loaded.model)
    try:
        pipe.word_scores(batch_size=1)
    finally:
        handle.remove()
    assert seen["calls"] == len(pipe.encoded)
    assert seen["positions"] == sum(len(e.context) for e in pipe.encoded)


@pytest.mark.parametrize("name", ["bert", "roberta"])
def test_mlm_words_of_equal_length_share_a_forward(tiny, tmp_path, rows, name):
    pipe = Pipeline(tmp_path, tiny[name], "{{ text }} it was {{ mask }} .", MIXED, rows[:6])
    scorer = pipe.scorer(batch_size=1)
    with torch.inference_mode():
        for enc in pipe.encoded:
            scorer.word_scores([enc])
    distinct = sum(len({len(ids) for ids in e.words.ids}) for e in pipe.encoded)
    assert distinct < sum(len(e.words.ids) for e in pipe.encoded)
    assert scorer.sequences == distinct


@pytest.mark.parametrize("name", ["bert", "roberta"])
def test_mlm_head_on_masks_only_equals_full_logits(tiny, tmp_path, rows, name):
    pipe = Pipeline(tmp_path, tiny[name], "{{ text }} it was {{ mask }} .", MIXED, rows[:8])
    fast = pipe.scorer()
    assert fast.head is not None
    slow = pipe.scorer()
    slow.head = None
    with torch.inference_mode():
        torch.testing.assert_close(fast.word_scores(pipe.encoded), slow.word_scores(pipe.encoded), atol=1e-5, rtol=0)


def test_aggregate_combines_word_probabilities(tiny, tmp_path, rows):
    """label score = log mean / max / sum of its words' probabilities."""
    results = {}
    for aggregate in ("mean", "max", "sum"):
        pipe = Pipeline(tmp_path / aggregate, tiny["bert"], "{{ text }} it was {{ mask }} .", MIXED, rows[:4],
                        aggregate=aggregate)
        words = pipe.word_scores(batch_size=4)
        labels = {e.index: combine(pipe.prepared.verbalizer, words[e.index][None])[0] for e in pipe.encoded}
        results[aggregate] = (words, labels)
    words, _ = results["mean"]
    for index, w in words.items():
        p = w.exp()  # words: negative = (terrible, dreadful), positive = (great, magnificent)
        expected = {"mean": torch.stack([p[:2].mean(), p[2:].mean()]).log(),
                    "max": torch.stack([p[:2].max(), p[2:].max()]).log(),
                    "sum": torch.stack([p[:2].sum(), p[2:].sum()]).log()}
        for aggregate, (_, labels) in results.items():
            torch.testing.assert_close(labels[index], expected[aggregate], atol=1e-5, rtol=0)
