"""What kind of fact a question asks for, and whether a reply states one the passages hold.

A question that asks for a number ("How many layers does StyleGAN have?", "When was DDIM
published?") or for a name ("Who invented the Wasserstein loss?", "Which company makes Imagen?")
is answered only by a reply that states a number, or a name, found in the passages shown and
not already in the question. Over passages that never say, a small model either invents one
("StyleGAN has 10 layers") or copies a passage sentence about something else ("Diffusion models
generate data by ..."); the embedding checks pass both, because the words are the passages'.
This is the answer-type test of classic question answering, kept to the two kinds whose
answers can be recognised from their surface: numerals and number words, and capitalised names.
Whatever the question, a numeral that neither it nor any passage states is invented, and the
reply holding it is refused as well (invented_numerals).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .answer import strip_citation_marks

NUMBER, NAME = "number", "name"

# "When should ..." asks for a situation, not a date, so only "when did/was/were" counts. "What"
# asks for a number when it asks for a measure: "What learning rate ...", "What is the largest fine ...".
_MEASURES = ("sizes?|numbers?|amounts?|counts?|lengths?|durations?|rates?|scores?|values?|percentages?|shares?"
             "|fractions?|proportions?|resolutions?|temperatures?|budgets?|prices?|costs?|fines?|ranks?|ratings?"
             "|dimensions?|speeds?|ages?|years?|dates?")
_ASKS_FOR_NUMBER = re.compile(
    r"^\W*(?:how (?:many|much|long|big|large|old|far|fast|often|tall|heavy|wide)\b"
    rf"|(?:in )?(?:what|which) (?:(?:is|was|are|were) )?(?:the )?(?:\w+ )?(?:{_MEASURES})\b"
    r"|when (?:did|was|were)\b)",
    re.IGNORECASE,
)
# Who made something, or which organisation or place: "Who is targeted ...?" may be answered by
# a group ("mostly women"), so only verbs of making count.
_ASKS_FOR_NAME = re.compile(
    r"^\W*(?:who (?:first )?(?:created|invented|wrote|introduced|developed|made|founded|built|designed|described"
    r"|proposed|coined|released|published|discovered)\b"
    r"|which (?:\w+ )?(?:company|companies|organisations?|organizations?|labs?|country|countries|country's"
    r"|universit(?:y|ies)|researchers?)\b)",
    re.IGNORECASE,
)
# "How many attention heads does ...": the counted thing is the last word before the verb, and a
# reply that counts something else ("135 million parameters") does not answer.
_COUNTED = re.compile(r"^\W*how many ((?:[\w-]+ ){1,4}?)(?:do|does|did|is|are|was|were|has|have|had|can|could|will|would)\b",
                      re.IGNORECASE)
_NUMERAL = re.compile(r"(?<![\w.-])\d[\d,]*(?:\.\d+)?(?!\w)")
_NUMBER_WORDS = frozenset("""
one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen
seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred hundreds
thousand thousands million millions billion billions trillion trillions dozen dozens half quarter
few several percent twice double
""".split())
_LIST_MARKER = re.compile(r"^\s*\d+[.)]\s", re.MULTILINE)
_CAPITALISED = re.compile(r"(?<![\w'-])[A-Z][\w-]*")


def asked_kind(question: str) -> str | None:
    """NUMBER, NAME, or None when the question asks for neither (most questions)."""
    if _ASKS_FOR_NUMBER.search(question):
        return NUMBER
    if _ASKS_FOR_NAME.search(question):
        return NAME
    return None


def reply_refusal(question: str, reply: str, passages: Sequence[str]) -> str | None:
    """Why a reply that the passages support still does not answer `question`: "invented_number",
    "asked_fact_missing", or None when it does."""
    if invented_numerals(question, reply, passages):
        return "invented_number"
    kind = asked_kind(question)
    if kind and not states_asked(kind, question, reply, passages):
        return "asked_fact_missing"
    return None


def _numerals(text: str) -> set[str]:
    """Numerals without thousands separators ("8,192" -> "8192"); citation marks like [2] and
    model names like "GPT-4" or "L6" hold none."""
    return {m.group().replace(",", "") for m in _NUMERAL.finditer(strip_citation_marks(text))}


def numbers_in(text: str) -> set[str]:
    """The numbers a text states: its numerals and its number words ("few", "million")."""
    return _numerals(text) | (set(re.findall(r"[a-z]+", text.lower())) & _NUMBER_WORDS)


def invented_numerals(question: str, reply: str, passages: Sequence[str]) -> set[str]:
    """Numerals in `reply` that neither the question nor any passage states ("98.3" for "What
    accuracy does the fraud model reach?"): whatever was asked, an answer from the passages has
    none. A list's item numbers ("1. ...") are layout, not facts. Number words are left alone:
    "two networks" for "a generator and a discriminator" is a paraphrase, not an invention."""
    known = set().union(*(_numerals(text) for text in (question, *passages)))
    return _numerals(_LIST_MARKER.sub("", strip_citation_marks(reply))) - known


def names_in(text: str) -> set[str]:
    """Capitalised words, lower-cased. A capital at a sentence's start says nothing, so there a
    word counts only when it has another capital or a digit ("NVIDIA", "SmolLM2")."""
    text = strip_citation_marks(text)
    found = set()
    for m in _CAPITALISED.finditer(text):
        word = m.group()
        before = text[: m.start()].rstrip()
        opens_sentence = not before or before[-1] in ".!?:;\n-*"
        if opens_sentence and not re.search(r"[A-Z0-9]", word[1:]):
            continue
        found.add(word.lower())
    return found


def counted_thing(question: str) -> str | None:
    """What a "How many ...?" question counts, singular and lower-cased ("heads"), or None."""
    match = _COUNTED.search(question)
    if not match:
        return None
    word = match.group(1).split()[-1].lower()
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def states_asked(kind: str, question: str, reply: str, passages: Sequence[str]) -> bool:
    """Whether `reply` states a fact of `kind` that a passage states and the question does not
    (and, for "How many X ...?", names X)."""
    if not passages:
        return False
    if kind == NUMBER:
        counted = counted_thing(question)
        if counted and not re.search(rf"\b{re.escape(counted)}", reply, re.IGNORECASE):
            return False
        stated = numbers_in(reply) - numbers_in(question)
        return bool(stated & set().union(*(numbers_in(p) for p in passages)))
    stated = names_in(reply) - {w.lower() for w in re.findall(r"[\w-]+", question)}
    return bool(stated & set().union(*(names_in(p) for p in passages)))
