"""CLIP's byte-pair-encoding tokenizer (Radford et al. 2021, Sec. 2.4; the BPE of Sennrich et al. 2016).

The real CLIP vocabulary (49,408 tokens: 256 bytes, 256 end-of-word bytes, 48,894 merges, start and
end tokens) and context of 77 tokens, built offline from the merges file shipped with open_clip:
:func:`tokenizer` returns it as a ``transformers.CLIPTokenizer``, :func:`tokenize` turns captions
into token ids and an attention mask ``(B, L)``.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import torch

VOCAB_SIZE = 49408  # 256 bytes + 256 end-of-word bytes + 48,894 merges + 2 special tokens
CONTEXT_LENGTH = 77  # tokens per caption, start and end tokens included
N_MERGES = VOCAB_SIZE - 2 * 256 - 2
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"


def bpe_vocab_path() -> Path:
    """The BPE merges file ``bpe_simple_vocab_16e6.txt.gz`` shipped inside open_clip_torch."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"open_clip_torch is not installed; the CLIP tokenizer is built from its {BPE_FILE}")
    path = Path(spec.origin).parent / BPE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the open_clip_torch installation lacks the CLIP BPE vocabulary")
    return path


def byte_alphabet() -> dict[int, str]:
    """Byte-level BPE alphabet (GPT-2, reused by CLIP): each of the 256 bytes -> one printable character.

    Printable Latin-1 bytes (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand for themselves; the other
    68 bytes (controls, space, ...) are mapped in byte order to ``chr(256)``, ``chr(257)``, ...
    The dict's order (printable bytes first) is the order of the first 256 vocabulary ids.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    for extra, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + extra)
    return table


def read_bpe_merges(path: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """The first 48,894 merge rules of CLIP's BPE file (the released models use exactly these)."""
    path = Path(path) if path is not None else bpe_vocab_path()
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a readable gzip text file of BPE merges: {err}") from err
    body = lines[1:N_MERGES + 1]  # line 0 is a version header
    merges = [tuple(line.split()) for line in body]
    bad = next((i for i, m in enumerate(merges) if len(m) != 2), None)
    if len(merges) < N_MERGES or bad is not None:
        where = f"line {bad + 2} is {body[bad]!r}" if bad is not None else f"only {len(merges)} merge lines"
        raise ValueError(f"{path}: expected {N_MERGES} merge rules 'a b' after the header; {where}")
    return merges  # type: ignore[return-value]


def build_vocab(merges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """CLIP's vocabulary: bytes, bytes + ``</w>`` (end of word), one token per merge, then BOS and EOS."""
    chars = list(byte_alphabet().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + [BOS_TOKEN, EOS_TOKEN]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError("duplicate tokens in the BPE vocabulary: the merges file is not CLIP's")
    return vocab


@functools.lru_cache(maxsize=1)
def tokenizer():
    """The CLIP BPE tokenizer (49,408 tokens, context length 77) as a ``transformers.CLIPTokenizer``.

    Built offline from open_clip's ``bpe_simple_vocab_16e6.txt.gz`` by passing the vocabulary dict
    and merge tuples (``vocab_file=``/``merges_file=`` silently give a 2-token vocabulary in
    transformers 5). Ids agree with ``open_clip.tokenize``; padding uses the end token (as the
    OpenAI checkpoints on the Hugging Face hub do), where ``open_clip`` pads with 0. Cached.
    """
    from transformers import CLIPTokenizer

    merges = read_bpe_merges()
    tok = CLIPTokenizer(vocab=build_vocab(merges), merges=merges, model_max_length=CONTEXT_LENGTH)
    if len(tok) != VOCAB_SIZE:
        raise RuntimeError(f"CLIP tokenizer has {len(tok)} tokens, expected {VOCAB_SIZE}")
    return tok


def tokenize(texts: str | Sequence[str], tok=None, *, context_length: int = CONTEXT_LENGTH,
             padding: str = "longest") -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, both ``(B, L)`` with ``L <= context_length``.

    Each row is ``<|startoftext|> tokens... <|endoftext|>`` then padding; text longer than
    ``context_length - 2`` tokens is truncated (the end token is kept). ``padding="max_length"``
    pads to ``context_length`` (what ``open_clip.tokenize`` does).
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: give at least one caption")
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be strings; got {', '.join(sorted(set(bad)))}")
    if padding not in ("longest", "max_length"):
        raise ValueError(f"padding must be 'longest' or 'max_length', got {padding!r}")
    tok = tok if tok is not None else tokenizer()
    enc = tok(texts, padding=padding, truncation=True, max_length=context_length, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]
