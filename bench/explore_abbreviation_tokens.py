"""Exploration behind docs/benchmarks.md §25: does the sentence ranker quote better when a
question's short form ("VAE") may be covered by its long form ("variational autoencoder"), token
by token, as the shown passages define it?

§17 spelled short forms out for the whole question, and the two long-form words then outweighed
the one short-form token: every sentence naming the model rose ("Why is a VAE's latent space
smooth?" quoted the definition). Here only the short form's own tokens change. Each of them
counts, for a sentence, the better of its own best match there and the mean best match of the
long form's tokens (read in the question spelled out, so in context); every other token, and
every weight, stays as the shipped `coverage-questions` ranking has it.

The definitions come from the passages shown for the question, nothing stored: their titles,
sections and sentences holding a bracket, read with the Schwartz-Hearst algorithm (the
`abbreviations` package: pip install abbreviations==0.2.5; not a ragbot dependency). It reads
letters and brackets, no word list. A question's word is a short form when it is one as written,
or is one without a lower-case ending after two capitals ("VAE" for "VAEs").

Development sets only (tests/data/corpus_qa*.jsonl answerable rows and
bench/data/follow_ups*_dev.jsonl); ROUGE-L of the sentence ranked first, paired differences to
the shipped ranking; the rows a short form can change are also reported apart. Never the frozen set.

    python bench/explore_abbreviation_tokens.py DATA_DIR [QA_FILES_TO_LOG,...]

DATA_DIR is made (shipped corpus, the QA files' questions logged as earlier questions, as
bench_answers.py --question-log does) when it does not exist.
"""
import logging
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from common import corpus_bot_and_development_rows, first_sentence_rouge, print_paired  # noqa: E402
from ragbot.answer.evidence import candidates  # noqa: E402
from ragbot.text import plain, sentences  # noqa: E402

_root = logging.getLogger()
_handlers, _level = _root.handlers[:], _root.level
from abbreviations import schwartz_hearst  # noqa: E402  (it calls logging.basicConfig(level=INFO))

_root.handlers[:] = _handlers
_root.setLevel(_level)

WORD = re.compile(r"\w[\w-]*")


def stem(short: str) -> str:
    """"VAEs" -> "VAE": a lower-case ending after two capitals or more."""
    body = short.rstrip("abcdefghijklmnopqrstuvwxyz")
    return body if body != short and sum(ch.isupper() for ch in body) >= 2 and body[-1].isupper() else short


def definitions(passages) -> dict[str, str]:
    """Short form (and its stem) -> long form, from the passages' titles, sections and sentences."""
    found: dict[str, str] = {}
    for p in passages:
        texts = [p.title or "", p.section or ""] + [s for s in sentences(plain(p.text)) if "(" in s]
        for text in texts:
            if "(" not in text:
                continue
            for short, long in schwartz_hearst.extract_abbreviation_definition_pairs(doc_text=text).items():
                if sum(ch.isupper() for ch in short) >= 2:  # "rh" would match plain words
                    long = " ".join(long.split())
                    found.setdefault(short, long)
                    found.setdefault(stem(short), long)
    return found


def spelled_out(question: str, known: dict[str, str]):
    """The question with each short form replaced by its long form, and for each: its span in
    the question and the long form's span in the spelled-out one; None when none is known."""
    out, spans, shift = question, [], 0
    for m in WORD.finditer(question):
        word = m.group()
        long = known.get(word) or known.get(stem(word))
        if long is None:
            continue
        start = m.start() + shift
        out = out[:start] + long + out[start + len(word):]
        spans.append(((m.start(), m.end()), (start, start + len(long))))
        shift += len(long) - len(word)
    return (out, spans) if spans else None


def inside(token_spans, span) -> list[int]:
    return [i for i, (a, b) in enumerate(token_spans) if a >= span[0] and b <= span[1] and b > a]


def coverage_either(ranker, asked, alt, pairs, told) -> np.ndarray:
    """coverage-questions' weighted mean, a short form's tokens covered by the better of
    themselves and the long form's tokens (their mean best match)."""
    weights = ranker._weights(asked.pieces)
    groups = [(inside(asked.spans, s), inside(alt.spans, lf)) for s, lf in pairs]
    groups = [(a, b) for a, b in groups if a and b]
    out = []
    for s in told:
        if not len(s.tokens):
            out.append(-1.0)
            continue
        best = (asked.tokens @ s.tokens.T).max(axis=1)
        for short_idx, long_idx in groups:
            best[short_idx] = np.maximum(best[short_idx], (alt.tokens[long_idx] @ s.tokens.T).max(axis=1).mean())
        out.append(float(best @ weights / weights.sum()))
    return np.array(out)


bot, single, follow = corpus_bot_and_development_rows(sys.argv[1], sys.argv[2].split(",") if len(sys.argv) > 2 else [])
ranker = bot.evidence_ranker
touched = {"n": 0}


def scores(queries, passages):
    pool = candidates(passages)
    if not pool:
        return None, None
    told = bot.embedder.encode_tokens([s for _, s in pool])
    known = definitions(passages)
    asked = bot.embedder.encode_tokens(list(queries))
    shipped = np.mean([ranker._coverage(q, told) for q in asked], axis=0)
    either = []
    for question, q in zip(queries, asked):
        out = spelled_out(question, known)
        if out is None:
            either.append(ranker._coverage(q, told))
            continue
        alt = bot.embedder.encode_tokens([out[0]])[0]
        either.append(coverage_either(ranker, q, alt, out[1], told))
    if any(spelled_out(q, known) for q in queries):
        touched["n"] += 1
    return pool, {"shipped": shipped, "short form or long form": np.mean(either, axis=0)}


results = first_sentence_rouge(bot, single, follow, scores)
print(f"questions holding a short form the shown passages define: {touched['n']}")
print_paired(results, "shipped", width=26)
for kind, rows in results.items():
    moved = [r for r in rows if r["short form or long form"] != r["shipped"]]
    print(f"{kind}: {len(moved)} changed; better {sum(r['short form or long form'] > r['shipped'] for r in moved)}, "
          f"worse {sum(r['short form or long form'] < r['shipped'] for r in moved)}")
for question in ["What is a VAE?", "Who invented VAEs?", "What is a GAN?", "What is RAG?",
                 "Why is a VAE's latent space smooth?", "What objective is a VAE trained to maximise?",
                 "What is a VAE? Who invented it?"]:
    passages = bot.search(question, k=5)
    pool, by_variant = scores([question], passages)
    print(question, "| defined:", {k: v for k, v in definitions(passages).items()})
    for name, v in by_variant.items():
        print(f"  {name:26s} {pool[int(np.argmax(v))][1][:100]}")
