"""Exploration behind docs/benchmarks.md §26: should the sentence ranker prefer a sentence that
adds to the question over one that only restates it?

The shipped `coverage-questions` ranking asks how well a sentence covers the question's tokens.
A sentence that is little more than the question's own words covers it fully and tells nothing:
"What is self-attention?" quoted "The core idea is self-attention.", "What is training data
extraction?" quoted "This is called training data extraction." Here each sentence also gets its
*novelty*: the IDF-weighted mean, over the sentence's tokens, of how far each is from its closest
question token (1 − the best cosine of the embedder's contextual token vectors, clipped to
[0, 1]), the mirror of coverage. No words are read. Variants combine the two without a fitted
weight: the product, the product with the square root, the sum with half the novelty, and the
product with 0.5 + novelty.

Development sets only (tests/data/corpus_qa*.jsonl answerable rows and
bench/data/follow_ups*_dev.jsonl); ROUGE-L of the sentence ranked first, paired differences to
the shipped ranking. Never the frozen set.

    python bench/explore_sentence_novelty.py DATA_DIR [QA_FILES_TO_LOG,...]

DATA_DIR is made (shipped corpus, the QA files' questions logged as earlier questions, as
bench_answers.py --question-log does) when it does not exist.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import corpus_bot_and_development_rows, first_sentence_rouge, print_paired  # noqa: E402
from ragbot.answer.evidence import candidates  # noqa: E402

bot, single, follow = corpus_bot_and_development_rows(sys.argv[1], sys.argv[2].split(",") if len(sys.argv) > 2 else [])
ranker = bot.evidence_ranker
embedder = bot.embedder
VARIANTS = {
    "shipped": lambda coverage, novelty: coverage,
    "coverage x novelty": lambda coverage, novelty: coverage * novelty,
    "coverage x sqrt(novelty)": lambda coverage, novelty: coverage * np.sqrt(novelty),
    "coverage + novelty / 2": lambda coverage, novelty: coverage + novelty / 2,
    "coverage x (0.5 + novelty)": lambda coverage, novelty: coverage * (0.5 + novelty),
}


def chunk_idf(pieces) -> np.ndarray:
    """The tokens' IDF in the user's chunks, as the ranker weighs a question's tokens (without the
    question log, which is about questions, not sentences)."""
    frequencies, n_chunks = ranker.document_frequencies(pieces)
    is_term = np.array([any(ch.isalnum() for ch in p) for p in pieces], dtype=bool)
    weights = np.log((n_chunks + 1) / (np.asarray(frequencies, dtype=np.float64) + 0.5)) * is_term
    return weights if weights.sum() > 0 else np.ones(len(pieces))


def coverage_and_novelty(question, told) -> tuple[np.ndarray, np.ndarray]:
    asked = embedder.encode_tokens([question])[0]
    weights = ranker._weights(asked.pieces)
    coverage, novelty = [], []
    for sentence in told:
        if not len(sentence.tokens) or not len(asked.tokens):
            coverage.append(-1.0)
            novelty.append(0.0)
            continue
        sims = asked.tokens @ sentence.tokens.T
        coverage.append(float(sims.max(axis=1) @ weights / weights.sum()))
        own = chunk_idf(sentence.pieces)
        novelty.append(float((1 - sims.max(axis=0).clip(0, 1)) @ own / own.sum()))
    return np.array(coverage), np.array(novelty)


def scores(queries, passages):
    pool = candidates(passages)
    if not pool:
        return None, None
    told = embedder.encode_tokens([s for _, s in pool])
    per_query = [coverage_and_novelty(q, told) for q in queries]  # a follow-up: its query and its turn
    return pool, {name: np.mean([combine(c, n) for c, n in per_query], axis=0) for name, combine in VARIANTS.items()}


results = first_sentence_rouge(bot, single, follow, scores)
print_paired(results, "shipped", width=28)
