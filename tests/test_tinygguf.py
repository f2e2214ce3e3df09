"""The tiny GGUF files of tinygguf.py load in transformers and hold the model and tokenizer they were
written from; the broken ones raise what tinygguf's docstring says."""
from __future__ import annotations

import struct

import pytest
import torch
from tinygguf import (
    UNSUPPORTED_ARCH,
    reference_llama,
    write_tiny_gguf,
    write_truncated_gguf,
    write_unsupported_arch_gguf,
)

SENTENCES = [
    "it was a great movie",
    "review : the plot was bad and boring",
    "An UNSEEN word, zebra-crossing 1234!",  # capitals, digits, characters the vocabulary lacks
    "  two leading spaces\nand a newline",
    "answer : positive</s>",  # a control token written in the text
]
MESSAGES = [{"role": "user", "content": "was it good ?"}, {"role": "assistant", "content": "great"}]

# Q8_0 moves these logits (max |logit| ~4) by ~0.06; a wrong q/k layout or swapped tensors by ~2.
Q8_MAX_ABS_DIFF = 0.3
Q8_MIN_ARGMAX_AGREEMENT = 0.9


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-gguf")
    write_tiny_gguf(folder / "f32.gguf")
    write_tiny_gguf(folder / "q8_0.gguf", quantize=True)
    return folder


def load_model(folder, name):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)


def logits(model, tokenizer) -> list[torch.Tensor]:
    with torch.no_grad():
        return [model(torch.tensor([tokenizer(s).input_ids])).logits[0] for s in SENTENCES]


@pytest.mark.parametrize("name", ["f32.gguf", "q8_0.gguf"])
def test_the_gguf_tokenizer_encodes_decodes_and_templates_like_the_reference(ggufs, name):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ggufs, gguf_file=name)
    _, reference = reference_llama()

    for sentence in SENTENCES:
        ids = tokenizer(sentence).input_ids
        assert ids == reference(sentence).input_ids, sentence
        assert tokenizer.decode(ids) == reference.decode(ids)
    assert len(tokenizer) == len(reference)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token, tokenizer.pad_token) == (
        reference.bos_token, reference.eos_token, reference.unk_token, reference.pad_token)
    assert tokenizer.chat_template == reference.chat_template  # read from `tokenizer.chat_template`
    for prompt in (True, False):
        assert tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=prompt) == \
            reference.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=prompt)


def test_the_config_comes_from_the_gguf_metadata(ggufs):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(ggufs, gguf_file="f32.gguf")
    expected = reference_llama()[0].config
    assert config.model_type == "llama"
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "max_position_embeddings", "tie_word_embeddings",
                "bos_token_id", "eos_token_id"):
        assert getattr(config, key) == getattr(expected, key), key
    assert config.rope_parameters["rope_theta"] == expected.rope_parameters["rope_theta"]
    assert config.rms_norm_eps == pytest.approx(expected.rms_norm_eps)  # stored as float32


def test_an_f32_gguf_gives_the_reference_logits(ggufs):
    reference, tokenizer = reference_llama()
    model = load_model(ggufs, "f32.gguf")
    assert model.dtype == torch.float32
    for got, want in zip(logits(model, tokenizer), logits(reference, tokenizer)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_a_q8_0_gguf_gives_close_logits_and_exactly_the_dequantized_reference(ggufs):
    reference, tokenizer = reference_llama()
    model = load_model(ggufs, "q8_0.gguf")
    got, want = torch.cat(logits(model, tokenizer)), torch.cat(logits(reference, tokenizer))
    assert not torch.equal(got, want)  # it really is quantized
    assert (got - want).abs().max() < Q8_MAX_ABS_DIFF
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() >= Q8_MIN_ARGMAX_AGREEMENT

    dequantized, _ = reference_llama(quantized=True)
    torch.testing.assert_close(got, torch.cat(logits(dequantized, tokenizer)), atol=1e-5, rtol=1e-5)


def test_the_q8_0_file_stores_its_matrices_as_q8_0_blocks(ggufs):
    from gguf import GGMLQuantizationType as Q
    from gguf import GGUFReader

    types = {t.name: t.tensor_type for t in GGUFReader(ggufs / "q8_0.gguf").tensors}
    assert types["token_embd.weight"] == types["output.weight"] == types["blk.0.attn_q.weight"] == Q.Q8_0
    assert types["output_norm.weight"] == types["blk.1.ffn_norm.weight"] == Q.F32
    assert {t.tensor_type for t in GGUFReader(ggufs / "f32.gguf").tensors} == {Q.F32}
    assert (ggufs / "q8_0.gguf").stat().st_size < (ggufs / "f32.gguf").stat().st_size / 2


def test_the_tolerances_catch_a_gguf_written_without_the_qk_permutation(tmp_path, monkeypatch):
    """Guards the checks above: random weights with a tiny spread would hide a layout bug."""
    import tinygguf

    monkeypatch.setattr(tinygguf, "_permute", lambda weight, heads: weight)
    write_tiny_gguf(tmp_path / "unpermuted.gguf", quantize=True)
    reference, tokenizer = reference_llama()
    got = torch.cat(logits(load_model(tmp_path, "unpermuted.gguf"), tokenizer))
    want = torch.cat(logits(reference, tokenizer))
    assert (got - want).abs().max() > 3 * Q8_MAX_ABS_DIFF
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() < Q8_MIN_ARGMAX_AGREEMENT


def _loaders():
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    return [AutoConfig, AutoTokenizer, AutoModelForCausalLM]


@pytest.mark.parametrize("loader", _loaders(), ids=lambda c: c.__name__)
def test_an_unsupported_architecture_raises_value_error(tmp_path, loader):
    write_unsupported_arch_gguf(tmp_path / "other.gguf")
    with pytest.raises(ValueError, match=f"^GGUF model with architecture {UNSUPPORTED_ARCH} is not supported yet"):
        loader.from_pretrained(tmp_path, gguf_file="other.gguf")


def test_a_made_up_architecture_raises_the_same(tmp_path):
    from transformers import AutoModelForCausalLM

    write_unsupported_arch_gguf(tmp_path / "other.gguf", arch="mamba-xyz")
    with pytest.raises(ValueError, match="^GGUF model with architecture mamba-xyz is not supported yet"):
        AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="other.gguf")


@pytest.mark.parametrize("loader", _loaders(), ids=lambda c: c.__name__)
def test_a_gguf_cut_in_half_raises_value_error_from_gguf_py(tmp_path, loader):
    # the vocabulary is intact, yet AutoTokenizer fails too: it rebuilds the config with gguf-py's
    # GGUFReader, which maps every tensor
    write_truncated_gguf(tmp_path / "cut.gguf")
    with pytest.raises(ValueError, match="^cannot reshape array of size"):
        loader.from_pretrained(tmp_path, gguf_file="cut.gguf")


def test_a_gguf_cut_inside_its_metadata_raises_struct_error_not_value_error(tmp_path):
    from transformers import AutoModelForCausalLM

    write_truncated_gguf(tmp_path / "cut.gguf", keep=0.01)
    with pytest.raises(struct.error, match="^unpack_from requires a buffer of at least") as caught:
        AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="cut.gguf")
    assert not isinstance(caught.value, ValueError)
