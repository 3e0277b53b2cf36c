"""The abbreviations a user's documents write ("Dr.", "Nr.", "Fig."), learned from their own text.

The sentence splitter (`text.sentence_spans`) reads punctuation and capitals only, so "first bred
by Dr. Ellen Marsh in 1987" was cut at "Dr." and the quote lost the name it was asked for. Which
words are abbreviations depends on the language and the documents, so it is learned from them,
not listed: NLTK's Punkt trainer (Kiss and Strunk's unsupervised method) finds the words that the
text writes with a full stop far more often than chance allows, and short; of those, the ones the
text never writes without the stop are kept. No training data, no word list, any language
written with full stops.

Learned when a write changes the stored chunks (`RagBot._writing`), from at most `MAX_CHARS` of
their text (a sample of chunks for a larger library: a word the documents abbreviate often is in
any sample, and Punkt reads about half a megabyte a second), and kept in the database's meta
table with the signature of the chunks it was learned from (`RagBot.abbreviations`).

Of what Punkt finds, a word the text also writes without its stop, or with it where a paragraph
or a list item ends, is dropped: such a word ends sentences. Known to be wrong sometimes: a
learned word that ends a sentence inside a paragraph ("…apples etc. The next…") joins it to the
next one, since only the word before the stop is read (Punkt's own tokenizer, which also reads
the word after it, keeps the same join, and splits "U.S. Financial Systems" in headings: §27 of
docs/benchmarks.md). Chunks overlap, so the sample repeats some text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragbot.text import BULLETS, LINE_BREAK, WORD_AS_ABBREVIATED

MAX_CHARS = 1_000_000  # of the chunks' text read to learn from (RagBot._chunk_text_sample samples it)
# A word (as the splitter takes it, text.WORD_AS_ABBREVIATED) and its full stop, with any closing
# quotes or brackets, where a block of text ends: before a blank line, or before a line that opens
# a list item (Markdown's, or a PDF's bullet glyph: text.BULLETS), a heading, a table row or a
# quote (the Markdown that readers write for every format), or before a line that begins with
# text.LINE_BREAK (a PDF line set apart by its spacing, where sentences end too). A paragraph does
# not end inside a sentence, so the word ended one. A line that merely wraps ("…first bred by
# Dr.\nEllen Marsh") starts with the sentence's next word, and a chunk's end is not a block's (a
# long paragraph is cut at any ". ", "Dr." included). Line ends are "\n": the readers write them so.
_BLOCK_END = re.compile(WORD_AS_ABBREVIATED + r"\.[\"'»“”’)\]]*"
                        rf"(?=[ \t]*\n(?:{LINE_BREAK}|[ \t]*(?:\n|[-*+{BULLETS}][ \t]|\d+[.)][ \t]|#{{1,6}}[ \t]|[|>])))")


def learn(texts: Sequence[str]) -> list[str]:
    """The abbreviations Punkt learns from `texts` (a chunk's text each), lower-cased and without
    their last full stop ("dr", "u.s"), sorted. Single letters are left out: the splitter already
    keeps initials ("John A. Kiley") whatever the documents say."""
    if not texts:
        return []
    from nltk.tokenize.punkt import PunktLanguageVars, PunktTrainer  # 1.4 s to import: only when needed

    text = "\n\n".join(texts)
    trainer = PunktTrainer()
    trainer.train(text, finalize=True)
    # A word the documents also write without a stop is a word that ended sentences, not an
    # abbreviation: Punkt's likelihood alone took "idea" (ending many sentences of the shipped
    # corpus, though "the core idea is" stands in it).
    bare = {token.lower() for token in PunktLanguageVars().word_tokenize(text) if not token.endswith(".")}
    # So is a word written with its stop where a block of text ends: the shipped corpus writes
    # "off." twice and "off" nowhere else ("…switched on or off. QLoRA combines…", and a list item
    # "…slightly or completely off."), and Punkt took it.
    ended = {m.group(1).lower() for one in texts for m in _BLOCK_END.finditer(one)}
    return sorted(word for word in trainer.get_params().abbrev_types
                  if len(word.replace(".", "")) > 1 and any(ch.isalpha() for ch in word)
                  and word not in bare and word not in ended)
