"""Exploration: BM25 terms that also tell a whole word from the first piece of a longer one.

BM25's terms are the embedder's word pieces (lexical.py), so "GANs" ("gan" + "##s") matches
"GAN". The price: "RAG" is the piece "rag", which also begins "ragbot" ("rag" + "##bot"), so
"What is RAG?" finds about-ragbot's chunks, which name ragbot in almost every sentence, before
the RAG document (docs/benchmarks.md §18). Tried here: every piece stays a term, and a word that
is one piece by itself also counts as a second term, the same piece marked whole. "RAG" then
matches "ragbot" by the piece alone and the RAG document by both; "GAN" still matches "GANs".
No word list: which words are whole comes from the tokenizer's own "##" continuation marks.

    python bench/explore_whole_words.py [--part dev,scifact,scifact-test] [--data-dir DIR]

- **dev**: the development question sets over the shipped corpus (`searched_development_sets`,
  looked at freely): the share of answerable questions whose gold document is the first passage
  and among the five, for bm25 and hybrid search, with and without the whole-word terms.
- **scifact**: BEIR SciFact's 809 train queries (development) on the index bench_scifact.py keeps
  in DIR/scifact, nDCG@10 for bm25 and hybrid, paired bootstrap 95% intervals.
- **scifact-test**: the 300 test queries, totals only; run only when the train queries say so.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import common
from common import machine, save, scifact_bot, searched_development_sets

WHOLE = " "  # what marks a whole-word term's name: WordPiece names hold no spaces


class WholeWordTerms:
    """The embedder's word pieces, plus a second term for every word that is one piece by itself
    (the `Words` lexical.py reads terms with)."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.name = f"{embedder.name}+whole-words"
        pieces = embedder.vocabulary
        self.size = max(pieces.values()) + 1
        self.vocabulary = {**pieces, **{WHOLE + p: i + self.size for p, i in pieces.items()}}
        spelled = embedder.tokenizer.convert_ids_to_tokens(list(range(self.size)))
        self._continues = np.array([bool(p) and p.startswith("##") for p in spelled], dtype=bool)
        self._spelled = {i: p for p, i in self.vocabulary.items()}

    def word_piece_ids(self, texts):
        is_term, continues, out = self.embedder._is_term, self._continues, []
        for ids in self.embedder._input_ids(list(texts)):
            row = np.asarray(ids, dtype=np.int32)
            cont = continues[row]
            whole = ~cont & ~np.append(cont[1:], False)  # starts a word that the next piece does not go on
            out.append(np.concatenate([row[is_term[row]], row[is_term[row] & whole] + self.size]).astype(np.int32))
        return out

    def word_pieces(self, texts):
        return [[self._spelled[int(i)] for i in row] for row in self.word_piece_ids(texts)]


class JoinedWordTerms:
    """The embedder's word pieces, plus a second term for every word made of several pieces: the
    pieces joined ("ragbot" for "rag" + "##bot"). Its vocabulary grows with the texts it reads:
    a word first seen in a query matches nothing, as it should."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.name = f"{embedder.name}+joined-words"
        self.vocabulary = dict(embedder.vocabulary)
        spelled = embedder.tokenizer.convert_ids_to_tokens(list(range(max(self.vocabulary.values()) + 1)))
        self._pieces = spelled
        self._spelled = {i: p for p, i in self.vocabulary.items()}

    def _term(self, word: str) -> int:
        name = WHOLE + word
        if name not in self.vocabulary:
            self.vocabulary[name] = len(self.vocabulary)
            self._spelled[self.vocabulary[name]] = name
        return self.vocabulary[name]

    def word_piece_ids(self, texts):
        is_term, out = self.embedder._is_term, []
        for ids in self.embedder._input_ids(list(texts)):
            row = np.asarray(ids, dtype=np.int32)
            joined, word = [], []
            for i in row.tolist() + [None]:
                piece = self._pieces[i] if i is not None else ""
                if i is not None and piece.startswith("##") and word:
                    word.append(piece[2:])
                    continue
                if len(word) > 1:
                    joined.append(self._term("".join(word)))
                word = [piece] if i is not None and is_term[i] else []
            out.append(np.concatenate([row[is_term[row]], np.asarray(joined, dtype=np.int32)]).astype(np.int32))
        return out

    def word_pieces(self, texts):
        return [[self._spelled[int(i)] for i in row] for row in self.word_piece_ids(texts)]


def with_terms(bot, words, **settings):
    """A bot with `settings` whose BM25 index reads terms with `words` (built here, not saved)."""
    from ragbot.retrieve.lexical import LexicalIndex

    other = bot.with_settings(**settings)
    if words is not None:
        other._current_index()
        index = LexicalIndex.build(other.store.chunk_ids(), lambda ids: list(other.store.chunks(ids).values()), words)
        other._lexical = (other.store.generation(), index)
    return other


VARIANTS = (WholeWordTerms, JoinedWordTerms)


def paired(label, base, new):
    return common.paired(label, base, new, ("pieces", "whole_words"))


def dev(work: Path) -> list[dict]:
    bot, rows, queries, _ = searched_development_sets(work)
    answerable = [i for i, r in enumerate(rows) if r.get("answerable") and r.get("gold_passage_ids")]
    lines = []
    for variant, mode in ((v, m) for v in VARIANTS for m in ("bm25", "hybrid")):
        found = [b.batch_search([queries[i] for i in answerable], k=5)
                 for b in (with_terms(bot, None, retrieval=mode), with_terms(bot, variant(bot.embedder), retrieval=mode))]
        for k in (1, 5):
            hits = [[float(any(Path(p.source).name in rows[i]["gold_passage_ids"] for p in passages[:k]))
                     for i, passages in zip(answerable, f)] for f in found]
            lines.append(paired(f"development sets, {variant.__name__}, {mode}, gold document in top {k}", *hits))
        for i, a, b in zip(answerable, *found):
            first = [Path(p.source).name for p in a[:1]], [Path(p.source).name for p in b[:1]]
            if first[0] != first[1]:
                print(f"  {rows[i]['question']!r}: {first[0]} -> {first[1]} (gold {rows[i]['gold_passage_ids']})")
    bot.close()
    return lines


def scifact(work: Path, split: str) -> list[dict]:
    from ragbot.evaluation.metrics import evaluate_retrieval

    if (found := scifact_bot(work)) is None:
        return []
    bot, test, train = found
    data = test if split == "test" else train
    lines = []
    for variant, mode in ((v, m) for v in VARIANTS for m in ("bm25", "hybrid")):
        base, new = (evaluate_retrieval(b, data, k=10).per_query
                     for b in (with_terms(bot, None, retrieval=mode), with_terms(bot, variant(bot.embedder), retrieval=mode)))
        lines.append(paired(f"scifact {split}, {variant.__name__}, {mode}, nDCG@10", [r["ndcg@10"] for r in base],
                            [r["ndcg@10"] for r in new]))
    bot.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", default="dev,scifact")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parent / ".cache"))
    args = parser.parse_args()
    print(machine(), flush=True)
    lines = []
    for part in args.part.split(","):
        if part == "dev":
            with tempfile.TemporaryDirectory() as tmp:
                lines += dev(Path(tmp))
        else:
            lines += scifact(Path(args.data_dir), "test" if part == "scifact-test" else "train")
    print(f"saved {save('explore_whole_words', {'lines': lines})}")


if __name__ == "__main__":
    main()
