"""Tokenisation with the real vocabularies in ../shared/models (BPE, WordPiece, SentencePiece).

Segment-wise tokenisation (context | label word | suffix) must give exactly the ids the
tokenizer gives the whole text, so label words get their leading-space form.
"""
from __future__ import annotations

import pytest
import yaml

from conftest import shared_path, write
from promptcli.prompt.encode import Encoder
from promptcli.errors import SpecError
from promptcli.models.info import load_info
from promptcli.prompt.render import Renderer
from promptcli.spec.loading import load_template
from promptcli.prompt.tokens import Segmenter
from promptcli.prompt.verbalizer import Verbalizer

pytestmark = pytest.mark.shared
CAUSAL = ["gpt2", "EleutherAI--pythia-160m", "TinyLlama--TinyLlama-1.1B-Chat-v1.0"]
MASKED = ["FacebookAI--roberta-base", "bert-base-uncased", "google--electra-small-discriminator",
          "distilbert--distilroberta-base"]
TEMPLATES = ["{{ text }} It was {{ mask }}.", "Review: {{ text }}\nSentiment:{{ mask }}",
             "Review: {{ text }}\nAnswer:\n{{ mask }}", "{{ text }} All in all, it was {{ mask }}"]
WORDS = {"negative": ["terrible", "not good"], "positive": ["great", "wonderfully"]}
TEXT = "it 's a charming and often affecting journey ."


def encoder_for(tmp_path, folder: str, text: str, scorer: str = "auto") -> tuple[Encoder, object]:
    info = load_info(str(shared_path("models", folder)), scorer=scorer)
    path = write(tmp_path / "t.yaml", yaml.safe_dump({"kind": "manual", "text": text, "verbalizer": {"labels": WORDS}}))
    template = load_template(path)
    tok = info.tokenizer
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    return Encoder(Renderer(template), Verbalizer(template.verbalizer), Segmenter(tok), info.kind,
                   info.max_length, start), info


@pytest.mark.parametrize("folder", CAUSAL)
@pytest.mark.parametrize("text", TEMPLATES)
def test_causal_segments_equal_whole_text_tokenisation(tmp_path, folder, text):
    encoder, info = encoder_for(tmp_path, folder, text)
    prompt = encoder.renderer.render({"text": TEXT})
    enc = encoder.split(prompt)
    for word, ids in zip(encoder.verbalizer.words, enc.words.ids):
        whole = info.tokenizer(prompt.prefix + word + prompt.suffix)["input_ids"]
        assert list(enc.context + ids + enc.suffix) == whole, (word, info.tokenizer.convert_ids_to_tokens(whole))


@pytest.mark.parametrize("folder", MASKED)
@pytest.mark.parametrize("text", TEMPLATES)
def test_mlm_masks_stand_exactly_for_the_word_tokens(tmp_path, folder, text):
    encoder, info = encoder_for(tmp_path, folder, text)
    tok = info.tokenizer
    prompt = encoder.renderer.render({"text": TEXT})
    enc = encoder.split(prompt)
    for word, ids in zip(encoder.verbalizer.words, enc.words.ids):
        whole = tok(prompt.prefix + word + prompt.suffix)["input_ids"]
        assert list(enc.context + ids + enc.suffix) == whole, (word, tok.convert_ids_to_tokens(whole))


@pytest.mark.parametrize("folder,token", [("gpt2", "Ġgreat"), ("FacebookAI--roberta-base", "Ġgreat"),
                                          ("bert-base-uncased", "great"), ("EleutherAI--pythia-160m", "Ġgreat"),
                                          ("TinyLlama--TinyLlama-1.1B-Chat-v1.0", "▁great")])
def test_label_word_gets_its_leading_space_form(tmp_path, folder, token):
    encoder, info = encoder_for(tmp_path, folder, TEMPLATES[0])
    enc = encoder.split(encoder.renderer.render({"text": TEXT}))
    great = enc.words.ids[encoder.verbalizer.words.index("great")]
    assert info.tokenizer.convert_ids_to_tokens(list(great)) == [token]


def test_labels_with_identical_tokens_are_a_load_time_error(tmp_path):
    info = load_info(str(shared_path("models", "bert-base-uncased")))
    path = write(tmp_path / "v.yaml", "labels:\n  positive: [Great]\n  negative: [great]\n")
    verbalizer = Verbalizer(load_template(write(tmp_path / "t.yaml", "kind: manual\ntext: '{{ text }} {{ mask }}'\n"
                                                "verbalizer: v.yaml\n")).verbalizer)
    with pytest.raises(SpecError, match="'positive' and 'negative' cannot be told apart") as err:
        verbalizer.table(Segmenter(info.tokenizer), "x", " ")
    assert err.value.path == str(path)


def test_word_that_tokenises_to_nothing_is_a_load_time_error(tmp_path):
    info = load_info(str(shared_path("models", "bert-base-uncased")))
    write(tmp_path / "v.yaml", "labels:\n  positive: [great]\n  negative: [\"\\u0301\"]\n")  # an accent alone
    verbalizer = Verbalizer(load_template(write(tmp_path / "t.yaml", "kind: manual\ntext: '{{ text }} {{ mask }}'\n"
                                                "verbalizer: v.yaml\n")).verbalizer)
    with pytest.raises(SpecError, match="tokenises to nothing") as err:
        verbalizer.table(Segmenter(info.tokenizer), "x", " ")
    assert err.value.field == "labels.negative"


def test_roberta_config_naming_the_base_model_is_detected_as_masked_lm():
    assert load_info(str(shared_path("models", "FacebookAI--roberta-base"))).kind == "mlm"
    assert load_info(str(shared_path("models", "FacebookAI--roberta-base"))).max_length == 512
    assert load_info(str(shared_path("models", "gpt2"))).kind == "causal"
