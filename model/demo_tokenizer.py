"""A small byte-level BPE tokenizer with Qwen3-Omni's real special-token ids, for the demo model.

The real tokenizer cannot be downloaded here, so the demo builds its own: the 256 byte tokens, the
role words as single tokens at their real ids (the Talker finds user turns by `user_token_id`), the
special tokens at their real ids, and pronounceable filler words in between so that random replies
read as nonsense words rather than as byte soup.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

# Qwen2/Qwen3 special tokens from 151643 on, in id order (the ids the real checkpoint uses).
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
    "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
    "<tool_response>", "</tool_response>", "<think>", "</think>", "<|audio_start|>", "<|audio_end|>",
    "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>", "<tts_text_bos_single>", "<|audio_pad|>",
)  # fmt: skip
FIRST_SPECIAL_ID = 151643
ROLE_TOKEN_IDS = {"user": 872, "system": 8948, "assistant": 77091}

# ChatML, as Qwen3-Omni writes it: media items become start/pad/end placeholders that the
# processor expands to one pad per encoder output token.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|im_start|>{{ message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'audio' -%}<|audio_start|><|audio_pad|><|audio_end|>"
    "{%- elif item['type'] == 'image' -%}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif item['type'] == 'video' -%}<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

MODEL_SPECIFIC_TOKENS = {
    "image_token": "<|image_pad|>",
    "audio_token": "<|audio_pad|>",
    "video_token": "<|video_pad|>",
    "vision_bos_token": "<|vision_start|>",
    "vision_eos_token": "<|vision_end|>",
    "audio_bos_token": "<|audio_start|>",
    "audio_eos_token": "<|audio_end|>",
}


def _byte_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes (what ByteLevel pre-tokenization produces)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _filler_words() -> Iterator[str]:
    """Endless pronounceable words: 'ka', 'Ġmelo', ... (Ġ is the byte-level space)."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    for n in itertools.count(1):
        for parts in itertools.product(syllables, repeat=n):
            word = "".join(parts)
            yield "Ġ" + word
            yield word


def build_tokenizer(out_dir: Path) -> None:
    """Write `tokenizer.json` and `tokenizer_config.json` for the demo model into `out_dir`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_chars = _byte_alphabet()
    vocab: dict[str, int] = {ch: i for i, ch in enumerate(byte_chars)}
    merges: list[tuple[str, str]] = []
    reserved = set(ROLE_TOKEN_IDS.values())
    fillers = (w for w in _filler_words() if w not in vocab and w not in ROLE_TOKEN_IDS)
    next_id = 256

    def take_id() -> int:
        nonlocal next_id
        while next_id in reserved:
            next_id += 1
        next_id += 1
        return next_id - 1

    for word, word_id in ROLE_TOKEN_IDS.items():
        prefix = word[0]
        for ch in word[1:]:
            merges.append((prefix, ch))
            prefix += ch
            if prefix not in vocab:
                vocab[prefix] = word_id if prefix == word else take_id()
    while next_id < FIRST_SPECIAL_ID:
        word = next(fillers)
        if word not in vocab:
            vocab[word] = take_id()

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=65536, model_specific_special_tokens=MODEL_SPECIFIC_TOKENS
    )
    ids = fast.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    expected = list(range(FIRST_SPECIAL_ID, FIRST_SPECIAL_ID + len(SPECIAL_TOKENS)))
    if ids != expected:
        raise RuntimeError(f"demo tokenizer: special tokens landed at {ids}, expected {expected}")
    fast.eos_token = "<|im_end|>"
    fast.pad_token = "<|endoftext|>"
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
