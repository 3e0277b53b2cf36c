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

Known to be wrong sometimes: a learned word that really ends a sentence ("…apples etc. The
next…") joins it to the next one, since only the word before the stop is read; Punkt's own
tokenizer would also read the word after it. Chunks overlap, so the sample repeats some text.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_CHARS = 1_000_000  # of the chunks' text read to learn from (RagBot._chunk_text_sample samples it)


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
    # corpus, though "the core idea is" stands in it) and "off" in "trade-off.".
    bare = {token.lower() for token in PunktLanguageVars().word_tokenize(text) if not token.endswith(".")}
    return sorted(word for word in trainer.get_params().abbrev_types
                  if len(word.replace(".", "")) > 1 and any(ch.isalpha() for ch in word) and word not in bare)
