"""Exploration: does the sentence ranker quote a section's subject better when a section's first
sentence (its lead) is also read with the heading above it? A document or section usually says
what its subject is in its first sentence ("A variational autoencoder is a generative model…"
under "Variational Autoencoders (VAEs)"), and the heading is where the short form is written.
§16 gave every sentence under a heading the heading's tokens, which lifted any sentence of a
section named like the question; here only the lead gets them. Nothing here reads words of a
language: a lead is the first prose block after a Markdown heading line in the passage's text.

Development sets only (tests/data/corpus_qa*.jsonl answerable rows and
bench/data/follow_ups*_dev.jsonl); ROUGE-L of the sentence ranked first, paired differences to
the shipped ranking; never the frozen set.

    python bench/explore_lead_sentences.py DATA_DIR [QA_FILES_TO_LOG,...]

DATA_DIR is made (shipped corpus, the QA files' questions logged as earlier questions, as
bench_answers.py --question-log does) when it does not exist.
"""
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from common import corpus_bot_and_development_rows, first_sentence_rouge, print_paired  # noqa: E402
from ragbot.answer.evidence import candidates  # noqa: E402
from ragbot.answer.generation import strip_citation_marks  # noqa: E402
from ragbot.text import heading_title, prose_pieces  # noqa: E402

BLOCK = re.compile(r"\n\s*\n")

bot, single, follow = corpus_bot_and_development_rows(sys.argv[1], sys.argv[2].split(",") if len(sys.argv) > 2 else [])
ranker = bot.evidence_ranker


def leads(passage) -> dict[str, str]:
    """Each lead sentence of the passage (as `candidates` writes it) -> the heading above it."""
    found, heading = {}, None
    for block in BLOCK.split(passage.text):
        lines = [line for line in block.splitlines() if line.strip()]
        titles = [heading_title(line) for line in lines]
        if lines and all(t is not None for t in titles):
            heading = titles[-1]
            continue
        if heading is not None:
            pieces = prose_pieces(block)
            if pieces:
                found[" ".join(strip_citation_marks(pieces[0][0]).split())] = heading
        heading = None
    return found


def scores(queries, passages):
    pool = candidates(passages)
    if not pool:
        return None, None
    lead_of = [leads(p) for p in passages]
    told = bot.embedder.encode_tokens([s for _, s in pool])
    headings = sorted({h for d in lead_of for h in d.values()})
    heading_tokens = dict(zip(headings, bot.embedder.encode_tokens(headings))) if headings else {}
    with_lead = []
    for (n, s), t in zip(pool, told):
        h = lead_of[n - 1].get(s)
        with_lead.append(t if h is None else SimpleNamespace(tokens=np.vstack([t.tokens, heading_tokens[h].tokens])))
    asked = bot.embedder.encode_tokens(list(queries))
    out = {"shipped": np.mean([ranker._coverage(q, told) for q in asked], axis=0),
           "lead + its heading": np.mean([ranker._coverage(q, with_lead) for q in asked], axis=0)}
    return pool, out


print_paired(first_sentence_rouge(bot, single, follow, scores), "shipped", width=20)
for question in ["What is a VAE?", "What is a GAN?", "What is RAG?", "What is retrieval-augmented generation?",
                 "What is LoRA?", "What objective is a VAE trained to maximise?"]:
    pool, by_variant = scores([question], bot.search(question, k=5))
    print(question)
    for name, v in by_variant.items():
        print(f"  {name:20s} {pool[int(np.argmax(v))][1][:90]}")
