"""Tiny random models with locally trained tokenizers, saved and reloaded through the real
`from_pretrained` path. Nothing is downloaded; building all four takes a few seconds.

The vocabularies are deliberately small, so long or rare words split into several tokens
(multi-token label words happen naturally).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

CORPUS = [
    "it was a great movie", "it was a terrible movie", "the acting was good and the plot was fun",
    "the plot was bad and boring", "a wonderful film with great acting", "an awful film , truly terrible",
    "review : the movie was great", "review : the movie was terrible", "answer : positive", "answer : negative",
    "the story is good , the music is bad", "i liked it", "i did not like it", "sentiment : neutral",
    "great", "terrible", "good", "bad", "okay", "fine", "the end .", "it is what it is",
] * 5


def _bpe_vocab(vocab_size: int, specials: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    data = json.loads(bpe.to_str())["model"]
    return data["vocab"], _merge_pairs(data["merges"])


def _merge_pairs(merges: list) -> list[tuple[str, str]]:
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def _wordpiece_vocab(vocab_size: int) -> dict[str, int]:
    """Specials, every character (alone and as a ## continuation) and the corpus's words, in a fixed
    order (the WordPiece trainer breaks ties differently in every process). Unseen words split into
    characters, so multi-token label words happen. `vocab_size` only caps the number of words."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w for line in CORPUS for w in line.lower().split()})
    chars = sorted({c for w in words for c in w} | set("abcdefghijklmnopqrstuvwxyz.,:!?'"))
    pieces = specials + chars + ["##" + c for c in chars if c.isalpha()] + [w for w in words if len(w) > 1]
    return {piece: i for i, piece in enumerate(dict.fromkeys(pieces[:vocab_size + len(words)]))}


def _metaspace_vocab(vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    sp = Tokenizer(models.BPE(unk_token="<unk>"))
    sp.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    sp.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    sp.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    data = json.loads(sp.to_str())["model"]
    return data["vocab"], _merge_pairs(data["merges"])


# Zephyr / TinyLlama-chat style turns
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def build_bert(out: Path, seed: int = 0) -> Path:
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    tokenizer = BertTokenizer(vocab=_wordpiece_vocab(160))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256, architectures=["BertForMaskedLM"])
    return _save(out, tokenizer, BertForMaskedLM, config, seed)


def build_roberta(out: Path, seed: int = 0) -> Path:
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizer

    vocab, merges = _bpe_vocab(300, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    # like the real one, <mask> swallows the space before it ("was <mask>" → was, <mask>)
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, mask_token=AddedToken("<mask>", lstrip=True))
    # a re-saved config names the base model, as the real roberta configs here do
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=258, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2, architectures=["RobertaModel"])
    return _save(out, tokenizer, RobertaForMaskedLM, config, seed)


def build_gpt2(out: Path, seed: int = 0, positions: int = 256) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    vocab, merges = _bpe_vocab(300, ["<|endoftext|>"])
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=positions,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    return _save(out, tokenizer, GPT2LMHeadModel, config, seed)


def build_llama(out: Path, seed: int = 0) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    vocab, merges = _metaspace_vocab(200)
    tokenizer = LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return _save(out, tokenizer, LlamaForCausalLM, config, seed)


def _save(out: Path, tokenizer, model_class, config, seed: int) -> Path:
    torch.manual_seed(seed)
    model = model_class(config).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


BUILDERS = {"bert": build_bert, "roberta": build_roberta, "gpt2": build_gpt2, "llama": build_llama}
