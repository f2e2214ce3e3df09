"""Tiny GGUF files, written in-process, so the fast tier exercises GGUF loading with nothing downloaded.

A GGUF here is converted FROM a tiny random HF llama and its locally trained tokenizer (both built from
`seed`, as in tiny.py), the way llama.cpp's `convert_hf_to_gguf.py` does it: llama.cpp tensor names,
q/k rows permuted into GGUF's rotary layout, the tokenizer's vocabulary, merges and special ids as
`tokenizer.ggml.*` metadata, and the chat template as `tokenizer.chat_template`. So

    folder = tmp_path
    write_tiny_gguf(folder / "tiny.gguf")
    AutoTokenizer.from_pretrained(folder, gguf_file="tiny.gguf")
    AutoModelForCausalLM.from_pretrained(folder, gguf_file="tiny.gguf")

load, and `reference_llama(seed)` rebuilds the HF model and tokenizer the file was written from, to
compare against (identical logits from an F32 file; from a Q8_0 one, within ~0.06 of max |logit| ~4,
and identical to `reference_llama(seed, quantized=True)`; same token ids; same chat template). Once
torch and transformers are imported, writing a file takes ~20 ms and loading the model from it ~0.1 s
(the first write in a process pays ~3 s of lazy imports: the llama modules, gguf, tokenizers).

How transformers 5.x reads these (transformers/integrations/gguf, modeling_gguf_pytorch_utils.py):
`llama` is not in the new packed-weights path (`GGUF_ARCHS` there is qwen35/qwen35moe/lfm2), so config
and weights go through the legacy `load_gguf_checkpoint` (gguf-py's `GGUFReader`, every tensor
dequantized to float at load, `LlamaTensorProcessor` undoing the q/k permutation), and the tokenizer
through `get_gguf_tokenizer` (`tokenizer.ggml.model == "llama"` builds a `LlamaTokenizer` from
`tokens` + `merges`; token_type 3 (CONTROL) tokens become special tokens).

Errors transformers raises for bad files (measured with transformers 5.24, gguf 0.19). Every case raises
the same exception from `AutoConfig`, `AutoTokenizer` and `AutoModelForCausalLM.from_pretrained(folder,
gguf_file=name)`: each of them first rebuilds the config from the file, and that is where it fails.

* `write_unsupported_arch_gguf(path)` (`general.architecture` "rwkv6", a real llama.cpp architecture;
  "mamba-xyz" or any other name the same):
      ValueError: GGUF model with architecture rwkv6 is not supported yet.
  from `modeling_gguf_pytorch_utils.load_gguf_checkpoint`, before any tensor or vocabulary is used.
* `write_truncated_gguf(path)` (cut in half, which lands in the tensor data):
      ValueError: cannot reshape array of size 1136 into shape (32,64)
  numpy's, from gguf-py's `GGUFReader.__init__` (gguf_reader.py `_build_tensors`), which maps every
  tensor even when only the config is wanted -- so AutoTokenizer fails too, though the vocabulary
  survived. Numbers vary with the cut; a cut 1 byte short of the end gives instead `ValueError: When
  changing to a larger dtype, its size must be a divisor of the total size in bytes of the last axis
  of the array.`
* Cut inside the metadata (`write_truncated_gguf(path, keep=...)` with `keep` under ~6%):
      struct.error: unpack_from requires a buffer of at least 501 bytes for unpacking 4 bytes at offset 497
      (actual buffer size is 500)
  from transformers' own reader (integrations/gguf/reader.py). `struct.error` is NOT a ValueError.
* Not a GGUF at all (no magic bytes): `ValueError: <path> does not start with the GGUF magic bytes,
  so it is not a GGUF file.`; an empty file: `ValueError: cannot mmap an empty file` (numpy).

So a caller mapping these to clear errors catches `(ValueError, struct.error)`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tiny import CHAT_TEMPLATE, _metaspace_vocab

ARCH = "llama"
UNSUPPORTED_ARCH = "rwkv6"  # a real llama.cpp architecture transformers has no GGUF mapping for


def reference_llama(seed: int = 0, *, quantized: bool = False):
    """`(model, tokenizer)`: the tiny HF llama a GGUF from `write_tiny_gguf(seed=seed)` holds.

    Like tiny.build_llama, but with weights big enough (and norms not all ones) that attention is far
    from uniform, so a wrong q/k layout or a swapped tensor shows in the logits instead of vanishing
    under the 0.02-std default initialisation.

    `quantized`: every 2-D weight round-tripped through Q8_0, i.e. exactly what transformers
    dequantizes out of `write_tiny_gguf(quantize=True)` (Q8_0 blocks lie along a row, so the q/k row
    permutation commutes with it). Don't pass this model to `write_gguf` (it would quantize twice).
    """
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    vocab, merges = _metaspace_vocab(200)
    tokenizer = LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         rms_norm_eps=1e-5, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every weight drawn here, from `seed` alone: the global RNG is left alone
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("norm.weight"):
                param.copy_(1 + 0.2 * noise)
            elif name == "model.embed_tokens.weight":
                param.copy_(noise)
            else:  # fan-in scaled: activations stay ~unit variance through every matmul
                param.copy_(noise / param.shape[1] ** 0.5)
            if quantized and param.ndim == 2:
                param.copy_(torch.from_numpy(_q8_0_round_trip(param.detach().numpy())))
    return model, tokenizer


def _q8_0_round_trip(weight: np.ndarray) -> np.ndarray:
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import dequantize, quantize

    return dequantize(quantize(weight, Q.Q8_0), Q.Q8_0)


def write_tiny_gguf(path: Path, *, seed: int = 0, quantize: bool = False) -> Path:
    """A GGUF of `reference_llama(seed)`: F32 tensors, or with `quantize` every 2-D weight as Q8_0."""
    model, tokenizer = reference_llama(seed)
    return write_gguf(model, tokenizer, path, quantize=quantize)


def write_truncated_gguf(path: Path, *, keep: float = 0.5, seed: int = 0) -> Path:
    """A valid tiny F32 GGUF cut to its first `keep` fraction. At 0.5 the metadata (vocabulary included,
    about the first 6% of the file) survives and the tensor data does not."""
    write_tiny_gguf(path, seed=seed)
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])
    return Path(path)


def write_unsupported_arch_gguf(path: Path, arch: str = UNSUPPORTED_ARCH, *, seed: int = 0) -> Path:
    """The tiny llama, tokenizer included, under another `general.architecture` (and `{arch}.*` keys)."""
    model, tokenizer = reference_llama(seed)
    return write_gguf(model, tokenizer, path, arch=arch)


def write_gguf(model, tokenizer, path: Path, *, quantize: bool = False, arch: str = ARCH) -> Path:
    """Convert an HF llama and its (Metaspace BPE, `LlamaTokenizer`) tokenizer to one GGUF file."""
    import gguf

    config = model.config
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, arch)  # the arch-scoped keys below are written as f"{arch}.…"

    writer.add_name("tiny-llama")  # not "mistral": transformers reads a llama named so as mistral
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quantize else gguf.LlamaFileType.ALL_F32)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    _add_tokenizer(writer, tokenizer)

    for name, tensor in _gguf_tensors(model):
        if quantize and tensor.ndim == 2:  # llama.cpp keeps the 1-D norms in F32 whatever the file type
            assert tensor.shape[1] % 32 == 0, f"{name}: Q8_0 needs rows of whole 32-value blocks"
            writer.add_tensor(name, gguf.quants.quantize(tensor, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, tensor)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_tokenizer(writer, tokenizer) -> None:
    import gguf

    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    assert [vocab[t] for t in tokens] == list(range(len(tokens))), "ids must be 0..n-1"
    special = set(tokenizer.all_special_tokens)
    types = [gguf.TokenType.UNKNOWN if t == tokenizer.unk_token
             else gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens]
    writer.add_tokenizer_model("llama")  # sentencepiece-style: "▁" for spaces, merges given
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores([-float(i) for i in range(len(tokens))])  # llama.cpp wants them; unused here
    writer.add_token_types(types)
    writer.add_token_merges(_merges(tokenizer))
    for token, add in ((tokenizer.bos_token, writer.add_bos_token_id), (tokenizer.eos_token, writer.add_eos_token_id),
                       (tokenizer.unk_token, writer.add_unk_token_id), (tokenizer.pad_token, writer.add_pad_token_id)):
        if token is not None:
            add(vocab[token])
    writer.add_add_bos_token(bool(getattr(tokenizer, "add_bos_token", True)))
    writer.add_add_eos_token(bool(getattr(tokenizer, "add_eos_token", False)))
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _merges(tokenizer) -> list[str]:
    """The BPE merges as GGUF stores them, "left right" (tokenizers serialises pairs or such strings)."""
    import json

    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def _gguf_tensors(model):
    """`(gguf_name, float32 array in torch (out, in) order)`, q/k rows in llama.cpp's rotary layout."""
    config = model.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    yield "token_embd.weight", state["model.embed_tokens.weight"]
    for i in range(config.num_hidden_layers):
        hf, blk = f"model.layers.{i}.", f"blk.{i}."
        yield blk + "attn_norm.weight", state[hf + "input_layernorm.weight"]
        yield blk + "attn_q.weight", _permute(state[hf + "self_attn.q_proj.weight"], heads)
        yield blk + "attn_k.weight", _permute(state[hf + "self_attn.k_proj.weight"], kv_heads)
        yield blk + "attn_v.weight", state[hf + "self_attn.v_proj.weight"]
        yield blk + "attn_output.weight", state[hf + "self_attn.o_proj.weight"]
        yield blk + "ffn_norm.weight", state[hf + "post_attention_layernorm.weight"]
        yield blk + "ffn_gate.weight", state[hf + "mlp.gate_proj.weight"]
        yield blk + "ffn_up.weight", state[hf + "mlp.up_proj.weight"]
        yield blk + "ffn_down.weight", state[hf + "mlp.down_proj.weight"]
    yield "output_norm.weight", state["model.norm.weight"]
    if not config.tie_word_embeddings:  # transformers ties the embeddings when a file has no output.weight
        yield "output.weight", state["lm_head.weight"]


def _permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """HF's rotate-half layout → GGUF's interleaved pairs: `LlamaModel.permute` in convert_hf_to_gguf.py,
    which transformers' `LlamaTensorProcessor._reverse_permute_weights` undoes on load."""
    return np.ascontiguousarray(
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape))
