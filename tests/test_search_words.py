"""`promptcli search words`: candidates equal brute force, assignments are scored as `run` scores them,
cross-validation earns a row only for words proposed without it, and no row outside --train is read."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch
import yaml
from typer.testing import CliRunner

import promptcli
from conftest import REPO
from helpers import sentences, write_specs
from promptcli.cli import app
from promptcli.prompt.tokens import Segmenter
from promptcli.prompt.verbalizer import Verbalizer
from promptcli.scoring.causal import CausalLMScorer
from promptcli.scoring.labels import LabelDistribution
from promptcli.search.assignments import WordTable, accuracies, add_words, predictions, rank, single_words
from promptcli.search.candidates import SlotSums, stratified_folds
from promptcli.search.vocabulary import clean_words
from promptcli.spec.loading import VerbalizerFile
from promptcli.spec.verbalizer import VerbalizerSpec


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_folds_are_stratified_and_seeded():
    labels = [0] * 9 + [1] * 7
    folds = stratified_folds(labels, 4, seed=3)
    assert folds == stratified_folds(labels, 4, seed=3) != stratified_folds(labels, 4, seed=4)
    for c in (0, 1):  # each class spread as evenly as it can be
        counts = [sum(1 for f, label in zip(folds, labels) if f == k and label == c) for k in range(4)]
        assert max(counts) - min(counts) <= 1


def brute_candidates(log_probs, labels, folds, top_k, pool, without):
    """Per class: the top_k words by (class mean − overall mean) among the pool most likely on the class."""
    rows = [i for i in range(len(labels)) if folds[i] != without]
    vocab = range(log_probs.shape[1])
    overall = {w: sum(float(log_probs[i, w]) for i in rows) / len(rows) for w in vocab}
    out = []
    for c in sorted(set(labels)):
        mine = [i for i in rows if labels[i] == c]
        mean = {w: sum(float(log_probs[i, w]) for i in mine) / len(mine) for w in vocab}
        likely = sorted(vocab, key=lambda w: -mean[w])[:pool]
        out.append(sorted(likely, key=lambda w: -(mean[w] - overall[w]))[:top_k])
    return out


@pytest.mark.parametrize("without", [None, 0, 2])
def test_candidates_equal_brute_force(without):
    torch.manual_seed(0)
    log_probs = torch.randn(30, 40).log_softmax(-1)
    labels = [i % 3 for i in range(30)]
    folds = stratified_folds(labels, 3, seed=1)
    sums = SlotSums.empty(3, 3, 40)
    for start in range(0, 30, 7):  # added in batches, in any order
        sums.add(log_probs[start:start + 7], folds[start:start + 7], labels[start:start + 7])
    assert sums.candidates(4, 12, without) == brute_candidates(log_probs, labels, folds, 4, 12, without)


def verbalizer_of(words_per_label: list[list[str]], aggregate: str) -> Verbalizer:
    spec = VerbalizerSpec(labels={f"l{c}": words for c, words in enumerate(words_per_label)}, aggregate=aggregate)
    return Verbalizer(VerbalizerFile(spec=spec, path=None, sha256=""))


@pytest.mark.parametrize("aggregate", ["mean", "max", "sum"])
@pytest.mark.parametrize("calibrated,pmi", [(False, False), (True, False), (False, True), (True, True)])
def test_assignments_predict_what_run_would(aggregate, calibrated, pmi):
    """The same word scores through `scoring/labels.py` (what `run` uses) give the same predictions."""
    torch.manual_seed(1)
    words = 9
    scores, premise, content_free = torch.randn(50, words) * 2, torch.randn(words), torch.randn(3, words) * 2
    word_label = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    table = WordTable.build(scores, [0] * 50, [0] * 50, torch.ones(1, words, dtype=torch.bool),
                            premise=premise if pmi else None, content_free=content_free if calibrated else None,
                            aggregate=aggregate)
    assignments = [((0,), (3,), (6,)), ((1, 2), (4,), (7, 8)), ((0, 1, 2), (5, 3), (8,))]
    got = predictions(table, assignments)
    for a, assignment in enumerate(assignments):
        columns = [w for label in assignment for w in label]
        assert all(word_label[w] == c for c, label in enumerate(assignment) for w in label)
        dist = LabelDistribution(verbalizer_of([[f"w{w}" for w in label] for label in assignment], aggregate),
                                 premise=premise[columns] if pmi else None)
        if calibrated:
            dist.p_cf = dist(content_free[:, columns]).exp().mean(0)
        assert torch.equal(got[:, a], dist(scores[:, columns]).argmax(-1))


def test_a_row_is_earned_only_by_words_proposed_without_it():
    # rows 0, 1 in fold 0, rows 2, 3 in fold 1; word 0 (label 0) was a candidate when fold 0's rows were
    # left out, but not when fold 1's were: it may earn rows 0 and 1 only
    scores = torch.tensor([[5.0, 1.0, 0.0], [0.0, 5.0, 0.0], [5.0, 1.0, 0.0], [0.0, 5.0, 0.0]])
    proposed = torch.tensor([[True, True, True], [False, True, True]])
    table = WordTable.build(scores, [0, 1, 0, 1], [0, 0, 1, 1], proposed)
    cv, train, _ = accuracies(table, [((0,), (1,)), ((2,), (1,))])
    assert train.tolist() == [1.0, 0.5]
    assert cv.tolist() == [0.5, 0.5]  # right on all 4 rows, but earns only fold 0's; the other is right on 2
    proposed[1, 0] = True
    assert accuracies(WordTable.build(scores, [0, 1, 0, 1], [0, 0, 1, 1], proposed), [((0,), (1,))])[0].tolist() == [1.0]
    # equal cross-validated accuracy: the one right on more training rows ranks first
    assert rank(table, [((2,), (1,)), ((0,), (1,))])[0].assignment == ((0,), (1,))


def test_more_words_are_added_only_when_the_ranking_improves():
    # word 1 alone loses rows 1 and 3 to label 0's word; word 2 wins them back; word 3 adds nothing
    scores = torch.tensor([[3.0, 0.0, 0.0, 0.0], [2.0, 0.0, 4.0, 0.0], [3.0, 0.0, 0.0, 0.0], [2.0, 0.0, 4.0, 0.0],
                           [0.0, 2.0, 0.0, 0.0]])
    table = WordTable.build(scores, [0, 1, 0, 1, 1], [0, 0, 1, 1, 0], torch.ones(2, 4, dtype=torch.bool))
    start = rank(table, [((0,), (1,))])[0]
    grown = add_words(table, start, [[0], [1, 2, 3]], max_words=3)
    assert start.cv == pytest.approx(0.6) and grown.cv == 1.0 and grown.assignment == ((0,), (1, 2))


def test_assignments_are_capped_by_dropping_the_weakest_candidates():
    pools = [[0, 1, 2, 3], [4, 5, 6], [7, 8]]
    every = single_words(pools, 10**6)
    assert len(every) == 24 and len(set(every)) == 24
    capped = single_words(pools, 8)
    assert len(capped) <= 8 and all(a in every for a in capped)
    assert all(a[0][0] in (0, 1) for a in capped)  # the first (strongest) candidates stay


@pytest.mark.parametrize("model", ["gpt2", "llama", "roberta"])
def test_clean_words_are_the_tokens_the_verbalizer_would_give(tiny, model):
    from transformers import AutoTokenizer

    segmenter = Segmenter(AutoTokenizer.from_pretrained(tiny[model]))
    words = clean_words(segmenter, ":", " ", len(segmenter.tokenizer))
    assert len(words) > 5
    for token, word in words.items():
        assert word.isalpha() and segmenter.encode_after(":", " " + word) == (token,)
    # brute force over the vocabulary: every alphabetic word spelled by one token in the slot is found
    for token in range(len(segmenter.tokenizer)):
        word = segmenter.tokenizer.decode([token]).strip()
        if word.isalpha() and segmenter.encode_after(":", " " + word) == (token,):
            assert words.get(token) == word


def search(tiny, tmp_path, model="gpt2", **options):
    template = write_specs(tmp_path / "spec", "Review: {{ text }}\nSentiment: {{ mask }}",
                           {"negative": ["bad"], "positive": ["good"]})
    train = write_rows(tmp_path / "train.jsonl", sentences(24, seed=2))
    return template, train, promptcli.search_words(template, train, tiny[model], out=tmp_path / "found",
                                                   progress=False, **options)


@pytest.mark.parametrize("model,calibrate", [("gpt2", "none"), ("gpt2", "contextual"), ("roberta", "contextual")])
def test_found_verbalizers_score_on_the_training_rows_what_the_search_says(tiny, tmp_path, model, calibrate):
    template, train, result = search(tiny, tmp_path, model, calibrate=calibrate, max_words=2, top_k=4)
    assert result.found and result.forward_passes > 0
    for found in result.found:
        spec = yaml.safe_load(found.path.read_text())
        assert spec["labels"] == found.words
        run = promptcli.run(template, train, tiny[model], verbalizer=str(found.path), calibrate=calibrate,
                            out=tmp_path / f"run-{found.path.stem}", progress=False, cache=False, store=False)
        assert run.accuracy == pytest.approx(found.train)
        assert found.cv <= found.train + 1e-9 or math.isclose(found.cv, found.train)
    given = promptcli.run(template, train, tiny[model], calibrate=calibrate, out=tmp_path / "given", progress=False,
                          cache=False, store=False)
    assert given.accuracy == pytest.approx(result.given)


def test_the_search_reads_no_row_outside_the_training_file(tiny, tmp_path, monkeypatch):
    """Every input the model sees is a training row or a content-free input, and every training row is read."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny["gpt2"])
    seen: list[str] = []
    prefill = CausalLMScorer.prefill

    def spy(self, contexts, use_cache):
        seen.extend(tokenizer.decode(list(c)) for c in contexts)
        return prefill(self, contexts, use_cache)

    monkeypatch.setattr(CausalLMScorer, "prefill", spy)
    write_rows(tmp_path / "dev.jsonl", [{"text": f"held out row {i}", "label": "positive"} for i in range(6)])
    _, train, result = search(tiny, tmp_path, calibrate="contextual")
    texts = {json.loads(line)["text"] for line in train.read_text().splitlines()}
    fields = [re.fullmatch(r"Review: (.*)\nSentiment:", context, re.S) for context in seen]
    assert seen and all(fields), seen
    assert {f.group(1) for f in fields} == texts | {"N/A", ""}
    assert result.rows == len(texts)


def test_results_do_not_depend_on_batch_size(tiny, tmp_path):
    runs = [search(tiny, tmp_path / str(b), batch_size=b, calibrate="contextual")[2] for b in (1, 32)]
    assert [f.words for f in runs[0].found] == [f.words for f in runs[1].found]
    assert [f.cv for f in runs[0].found] == pytest.approx([f.cv for f in runs[1].found])


def test_cli_prints_the_found_words_and_bad_input_is_a_clear_error(tiny, tmp_path):
    template = write_specs(tmp_path / "spec", "{{ text }} It was {{ mask }}", {"negative": ["bad"], "positive": ["good"]})
    train = write_rows(tmp_path / "train.jsonl", sentences(16))
    result = CliRunner().invoke(app, ["search", "words", str(template), "--train", str(train), "-m", tiny["gpt2"],
                                      "--out", str(tmp_path / "out"), "--quiet", "--top-k", "3"])
    assert result.exit_code == 0, result.output
    assert "verbalizer-1.yaml" in result.output and "cross-validated" in result.output
    assert (tmp_path / "out/verbalizer-1.yaml").read_text().startswith("# Label words found by")
    unlabelled = write_rows(tmp_path / "unlabelled.jsonl", [{"text": r["text"]} for r in sentences(8)])
    bad = CliRunner().invoke(app, ["search", "words", str(template), "--train", str(unlabelled), "-m", tiny["gpt2"],
                                   "--out", str(tmp_path / "out2"), "--quiet"])
    assert bad.exit_code == 3 and "labelled training rows" in bad.output and "unlabelled.jsonl" in bad.output
    assert "Traceback" not in bad.output
    one_each = write_rows(tmp_path / "tiny.jsonl", sentences(2))
    bad = CliRunner().invoke(app, ["search", "words", str(template), "--train", str(one_each), "-m", tiny["gpt2"],
                                   "--out", str(tmp_path / "out3"), "--quiet"])
    assert bad.exit_code == 3 and "at least 2 training rows" in bad.output
    again = CliRunner().invoke(app, ["search", "words", str(template), "--train", str(train), "-m", tiny["gpt2"],
                                     "--out", str(tmp_path / "out"), "--quiet"])
    assert again.exit_code == 5 and "never overwritten" in again.output
    cot = CliRunner().invoke(app, ["search", "words", str(REPO / "templates/sst2/cot.yaml"), "--train", str(train),
                                   "-m", tiny["gpt2"], "--out", str(tmp_path / "cot"), "--quiet"])
    assert cot.exit_code == 5 and "generates its answer" in cot.output


def test_equal_accuracy_is_broken_by_the_gold_labels_probability():
    # both assignments are right on every row; words 1 and 3 separate the labels by more
    scores = torch.tensor([[1.0, 3.0, 0.0, 0.0], [0.0, 0.0, 1.0, 3.0]])
    table = WordTable.build(scores, [0, 1], [0, 1], torch.ones(2, 4, dtype=torch.bool))
    ranked = rank(table, [((0,), (2,)), ((1,), (3,))])
    assert [s.cv for s in ranked] == [1.0, 1.0] and ranked[0].assignment == ((1,), (3,))
    assert ranked[0].log_likelihood > ranked[1].log_likelihood
