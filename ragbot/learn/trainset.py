"""Training data for tuning the generator, made from the user's own documents and feedback.

No external model or service is involved:
1. Questions about indexed chunks, made by structure (definitions such as "X is a ..." and
   section headings) and, optionally, by the local generator itself.
2. Each question is kept only if it passes two checks: it retrieves its own chunk among the
   passages the chatbot would show, and the chunk holds a sentence that answers it (embedding
   cosine to the question of at least ANSWER_MIN_SIMILARITY). That sentence is the answer.
3. An answerable example shows the gold chunk among the question's other retrieved chunks, at
   a random position, in the chatbot's own prompt format; the target is the answer sentence
   citing that position. An unanswerable example is the same question with the answer withheld:
   either the gold chunk's whole document (the passages are then about other things), or only
   the gold chunk (the passages are then on the same topic but lack the fact, the near miss a
   user's question often is). Any passage holding or close to the answer sentence is dropped
   too. The target is the refusal.
4. Undesirable completions for KTO/DPO: for each example, the mistakes the model must unlearn
   (wrong citation, refusing an answerable question, answering an unanswerable one), plus the
   feedback log's votes and corrections.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ragbot.answer.generation import REFUSAL, build_prompt
from ragbot.storage.files import atomic_file
from ragbot.storage.store import StoredChunk
from ragbot.text import cited, plain, prose_sentences, sentence_body, word_count
from ragbot.types import Passage

# A chunk sentence answers a question when their embeddings are at least this similar.
ANSWER_MIN_SIMILARITY = 0.35
# A withheld-answer example drops any passage at least this similar to the answer sentence.
LEAK_SIMILARITY = 0.60
ANSWER_WORDS = (5, 45)  # answer sentences outside this length are not used

_DEFINITION = re.compile(
    r"^(?P<term>[A-Z][\w\-/()' ]{1,60}?)\s+(?P<verb>is|are|refers to|means)\s+(?:a|an|the|one)\s+\S"
)
_NOT_A_TERM = {"it", "this", "that", "these", "those", "they", "there", "here", "examples", "one", "each", "what"}
# A heading's outline number ("5.2.7. ", "3) "): no one asks about it, and a suggestion read "What
# does the DHS2020 document say about 5.2.7. Information, Awareness & Resources?". A number with
# a stop or bracket after it is one; not a year ("2024 Goals").
_OUTLINE_NUMBER = re.compile(r"^\d+(?:\.\d+)*[.)]\s+(?=\S)")
# Numbers joined by stops ("4.1 Data sharing") are one only in a document whose other headings
# are numbered too: alone, "2.5 Million Users" is a figure.
_DOTTED_NUMBER = re.compile(r"^\d+(?:\.\d+)+\s+(?=\S)")
_QUESTION_LINE = re.compile(r"([A-Z][^?\n]{8,200}\?)")


@dataclass
class Candidate:
    """A question about one chunk, before the checks."""

    question: str
    chunk_id: int
    origin: str  # "definition", "heading" or "model"
    answer: str = ""  # the chunk sentence that answers it (set by the checks)


@dataclass
class Example:
    """One training or held-out example, in the chatbot's prompt format."""

    question: str
    passages: list[dict]  # in prompt order: id, title, section, page, text
    target: str  # the answer citing the gold passage, or the refusal
    answerable: bool
    origin: str
    gold: int | None  # citation number of the gold passage
    chunk_id: int
    answer: str = ""  # reference answer without the citation
    withheld: str = ""  # unanswerable examples: "document" or "chunk" (what was taken out)
    prompt: str = ""  # rendered with the generator's chat template
    rejected: list[str] = field(default_factory=list)  # undesirable completions for this prompt

    def as_eval_row(self) -> dict:
        """The `ragbot eval answers` row for this example (generation on the given passages)."""
        gold_id = self.passages[self.gold - 1]["id"] if self.gold else None
        return {
            "question": self.question, "answers": [self.answer] if self.answerable else [],
            "answerable": self.answerable, "category": self.origin,
            "gold_passage_ids": [gold_id] if gold_id else [], "passages": self.passages,
        }


# -- questions ---------------------------------------------------------------------------------


def answer_sentences(text: str, abbreviations: frozenset[str] = frozenset()) -> list[str]:
    """Whole prose sentences of a chunk (text.prose_sentences) that are a sensible answer length;
    a piece cut off by the chunk boundary (starting with a small letter or anything but a letter,
    or ending in no sentence stop of any script) is skipped. A script without capitals (Japanese,
    Hindi, Arabic) starts every sentence with a letter that is neither, so its sentences are kept
    (they were all skipped when a capital was required). `abbreviations`: the documents' own
    (RagBot.abbreviations), which end no sentence."""
    return [sentence for sentence in prose_sentences(text, abbreviations)
            if ANSWER_WORDS[0] <= word_count(sentence) <= ANSWER_WORDS[1]
            and sentence[:1].isalpha() and not sentence[:1].islower() and sentence_body(sentence) != sentence]


def structural_questions(chunks: Sequence[StoredChunk], abbreviations: frozenset[str] = frozenset(),
                         sections: Iterable[tuple[str, str]] | None = None) -> list[Candidate]:
    """Questions from definitions ("X is a ...") and from section headings, without a heading's
    outline number (`_OUTLINE_NUMBER`; `_DOTTED_NUMBER` when another heading of the same document
    is numbered). `sections`: (source, section) of the documents' sections, for a sample of their
    chunks (Store.document_sections); default: those of `chunks`."""
    found = []
    if sections is None:
        sections = {(chunk.source, chunk.section) for chunk in chunks}
    headings = {(source, _innermost(section)) for source, section in sections}
    numbered = Counter(source for source, heading in headings  # numbered headings of each document
                       if _OUTLINE_NUMBER.match(heading) or _DOTTED_NUMBER.match(heading))
    for chunk in chunks:
        for sentence in answer_sentences(chunk.text, abbreviations):
            match = _DEFINITION.match(sentence)
            if not match:
                continue
            term = match.group("term").strip()
            if term.lower() in _NOT_A_TERM or term.split()[0].lower() in _NOT_A_TERM:
                continue
            verb = "are" if match.group("verb") == "are" else "is"
            found.append(Candidate(f"What {verb} {term[0].lower() + term[1:] if _lower_ok(term) else term}?",
                                   chunk.id, "definition"))
        heading = _OUTLINE_NUMBER.sub("", _innermost(chunk.section))
        if numbered[chunk.source] > 1:
            heading = _DOTTED_NUMBER.sub("", heading)
        if heading and heading != chunk.title and 1 <= len(heading.split()) <= 10:
            if heading.endswith("?"):
                question = heading
            else:
                question = f"What does the {chunk.title} document say about {_lower(heading)}?"
            found.append(Candidate(question, chunk.id, "heading"))
    return found


def _innermost(section: str) -> str:
    """The innermost heading of a section path ("Plan > 4.1 Data" -> "4.1 Data"; "" for none)."""
    return section.split(" > ")[-1].strip() if section else ""


def _lower_ok(term: str) -> bool:
    """Lower-case the first letter unless the first word is an acronym or a name-like word."""
    first = term.split()[0]
    return (len(first) == 1 or first[1:].islower()) and first.lower() in {"the", "a", "an"}


def _lower(heading: str) -> str:
    """A heading as the words after "say about": its first letter small when it is written as a
    sentence is ("Data sharing with the EU" -> "data sharing with the EU"), not when its first word
    is an acronym or the heading capitalises its words ("Manufacturing and Engineering" stays:
    "manufacturing and Engineering" read oddly in a suggestion, helper-89's drive)."""
    words = heading.split()
    capitalised = any(word[:1].isupper() and word[1:].islower() for word in words[1:])
    return heading[0].lower() + heading[1:] if words[0][1:].islower() and not capitalised else heading


def model_questions(chunks: Sequence[StoredChunk], write_question: Callable[[str], str], limit: int,
                    rng: random.Random, progress: Callable[[int, int], None] | None = None,
                    abbreviations: frozenset[str] = frozenset()) -> list[Candidate]:
    """Up to `limit` questions written by the local generator, each for one sentence of a chunk.

    `write_question(prompt_text)` returns the model's continuation of a rendered prompt (see
    question_writer_messages). Sentences are sampled across all chunks."""
    pool = [(chunk.id, sentence) for chunk in chunks for sentence in answer_sentences(chunk.text, abbreviations)]
    rng.shuffle(pool)
    found = []
    for i, (chunk_id, sentence) in enumerate(pool[:limit], start=1):
        reply = write_question(sentence).strip().split("\n")[0]
        match = _QUESTION_LINE.search(reply)
        if match:
            found.append(Candidate(" ".join(match.group(1).split()), chunk_id, "model"))
        if progress:
            progress(i, min(limit, len(pool)))
    return found


# Worked examples steer the small model better than instructions alone; they are about topics
# unlikely to be in a user's documents, so they rarely leak into its questions.
_QUESTION_SHOTS = [
    ("The Eiffel Tower was completed in 1889 for the World's Fair.", "When was the Eiffel Tower completed?"),
    ("Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
     "What does photosynthesis turn light, water and carbon dioxide into?"),
    ("Honey bees communicate the direction of food with a waggle dance.", "How do honey bees tell each other where food is?"),
]


def question_writer_messages(sentence: str) -> list[dict[str, str]]:
    """Chat messages asking for a question the sentence answers; the reply is continued after "Question:"."""
    shots = "".join(f"Sentence: {s}\nQuestion: {q}\n\n" for s, q in _QUESTION_SHOTS)
    return [{"role": "user", "content": f"Write a question that the sentence answers.\n\n{shots}Sentence: {sentence}"}]


# -- checks and examples -------------------------------------------------------------------------


@dataclass
class CheckReport:
    made: Counter = field(default_factory=Counter)  # by origin
    kept: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)  # by reason


def check_candidates(bot, candidates: Sequence[Candidate], report: CheckReport) -> list[tuple[Candidate, list[Passage]]]:
    """Keep questions that retrieve their own chunk and that a sentence of it answers.

    Returns each kept candidate (with `answer` set) and its retrieved passages."""
    settings = bot.settings
    unique: dict[str, Candidate] = {}
    for c in candidates:
        report.made[c.origin] += 1
        key = c.question.lower()
        if key in unique:
            report.rejected["duplicate question"] += 1
            continue
        unique[key] = c
    candidates = list(unique.values())
    if not candidates:
        return []
    retrieved = bot.batch_search([c.question for c in candidates], k=settings.top_k + settings.prompt_passages)
    chunks = bot.store.chunks([c.chunk_id for c in candidates])
    kept = []
    for candidate, passages in zip(candidates, retrieved):
        shown = [p for p in passages if p.score >= settings.min_score][: settings.prompt_passages]
        if candidate.chunk_id not in {p.chunk_id for p in shown}:
            report.rejected["does not retrieve its chunk"] += 1
            continue
        sentences = answer_sentences(chunks[candidate.chunk_id].text, bot.abbreviations())
        if not sentences:
            report.rejected["no answer-sized sentence in the chunk"] += 1
            continue
        vectors = bot.embedder.encode([candidate.question] + sentences)
        scores = vectors[1:] @ vectors[0]
        best = int(scores.argmax())
        if float(scores[best]) < ANSWER_MIN_SIMILARITY:
            report.rejected["no sentence of the chunk answers it"] += 1
            continue
        candidate.answer = sentences[best]
        report.kept[candidate.origin] += 1
        kept.append((candidate, passages))
    return kept


def passage_dict(p: Passage) -> dict:
    return {"id": f"chunk-{p.chunk_id}", "title": p.title, "section": p.section, "page": p.page, "text": p.text}


def cite(answer: str, n: int) -> str:
    """"Sentence." -> "Sentence [n]." (the format the system prompt asks for, and the one an
    answer quoting the sentence has: text.cited); a full stop is added to an answer without one."""
    answer = answer.rstrip()
    return cited(answer if sentence_body(answer) != answer else answer + ".", n)


def make_examples(bot, kept: Sequence[tuple[Candidate, list[Passage]]], rng: random.Random,
                  unanswerable_share: float = 0.5, same_document_share: float = 0.5) -> list[Example]:
    """Answerable examples for every kept question; unanswerable ones for a share of them.

    Of the unanswerable ones, `same_document_share` withhold only the gold chunk (near misses),
    the rest its whole document."""
    n_shown = bot.settings.prompt_passages
    examples = []
    for candidate, passages in kept:
        gold = next(p for p in passages if p.chunk_id == candidate.chunk_id)
        others = [p for p in passages if p.chunk_id != gold.chunk_id][: n_shown - 1]
        position = rng.randint(0, len(others))
        shown = others[:position] + [gold] + others[position:]
        examples.append(Example(
            question=candidate.question, passages=[passage_dict(p) for p in shown],
            target=cite(candidate.answer, position + 1), answerable=True, origin=candidate.origin,
            gold=position + 1, chunk_id=candidate.chunk_id, answer=candidate.answer,
        ))
        if rng.random() >= unanswerable_share:
            continue
        withheld = "chunk" if rng.random() < same_document_share else "document"
        if withheld == "chunk":
            rest = [p for p in passages if p.chunk_id != gold.chunk_id]
        else:
            rest = [p for p in passages if p.source != gold.source]
        rest = _without_answer(bot, candidate.answer, rest)[:n_shown]
        if rest:
            examples.append(Example(
                question=candidate.question, passages=[passage_dict(p) for p in rest],
                target=REFUSAL, answerable=False, origin=candidate.origin, gold=None,
                chunk_id=candidate.chunk_id, answer=candidate.answer, withheld=withheld,
            ))
    return examples


def answerability_examples(bot, kept: Sequence[tuple[Candidate, list[Passage]]], rng: random.Random) -> list[Example]:
    """Every kept question three ways, for fitting the answerability check: with its gold chunk
    shown, with only the gold chunk withheld, and with its whole document withheld."""
    chunk_withheld = make_examples(bot, kept, rng, unanswerable_share=1.0, same_document_share=1.0)
    document_withheld = make_examples(bot, kept, rng, unanswerable_share=1.0, same_document_share=0.0)
    return chunk_withheld + [ex for ex in document_withheld if not ex.answerable]


def feedback_answerability_examples(bot, labels: Sequence[dict]) -> list[Example]:
    """The feedback log's answerability labels (FeedbackLog.answerability_labels) as examples
    for the check, with the passages' current text. A row whose passages were all re-ingested
    or removed since is left out: what was shown no longer exists."""
    stored = bot.store.chunks(sorted({i for label in labels for i in label["chunk_ids"]}))
    examples = []
    for label in labels:
        shown = [stored[i] for i in label["chunk_ids"] if i in stored]
        if not shown:
            continue
        examples.append(Example(
            question=label["question"], answerable=label["answerable"], origin="feedback", gold=None,
            passages=[{"id": f"chunk-{c.id}", "title": c.title, "section": c.section, "page": c.page, "text": c.text}
                      for c in shown],
            target="" if label["answerable"] else REFUSAL, chunk_id=-1,
        ))
    return examples


def _without_answer(bot, answer: str, passages: list[Passage]) -> list[Passage]:
    """Passages that neither contain the answer sentence (chunks overlap) nor come close to it.
    The answer is one of `prose_sentences`, so it is looked for among them too: a table row is
    stored with its bars ("| Engines: | 1 |") and answered without ("Engines: 1")."""
    said = plain(answer).lower()
    passages = [p for p in passages if said not in plain(p.text).lower()
                and said not in (s.lower() for s in prose_sentences(p.text, bot.abbreviations()))]
    if not passages:
        return []
    vectors = bot.embedder.encode([answer] + [p.text for p in passages])
    close = vectors[1:] @ vectors[0]
    return [p for p, s in zip(passages, close) if float(s) < LEAK_SIMILARITY]


def add_mistakes(examples: Sequence[Example], rng: random.Random) -> None:
    """Undesirable completions each example's prompt must not get: the behaviours tuning removes."""
    for ex in examples:
        if ex.answerable:
            wrong = [n for n in range(1, len(ex.passages) + 1) if n != ex.gold]
            if wrong:
                ex.rejected.append(cite(ex.answer, rng.choice(wrong)))  # cites the wrong passage
            ex.rejected.append(REFUSAL)  # refuses although the answer is there
        else:
            ex.rejected.append(cite(ex.answer, 1))  # answers although the passages do not say it


def render_prompts(examples: Sequence[Example], generator, budget: int) -> None:
    """Fill in each example's prompt exactly as the chatbot would build it."""
    for ex in examples:
        passages = [Passage(chunk_id=i, source=p["id"], title=p["title"], section=p["section"] or "",
                            page=p["page"], text=p["text"], score=1.0, rank=i)
                    for i, p in enumerate(ex.passages, start=1)]
        prompt = build_prompt(ex.question, passages, render=generator.render,
                              count_tokens=generator.count_tokens, budget=budget)
        ex.prompt = prompt.text


def split_heldout(examples: Sequence[Example], fraction: float, rng: random.Random) -> tuple[list[Example], list[Example]]:
    """Hold out whole chunks, so no held-out question is about a chunk seen in training."""
    chunk_ids = sorted({ex.chunk_id for ex in examples})
    rng.shuffle(chunk_ids)
    n_held = max(1, round(len(chunk_ids) * fraction)) if fraction > 0 and len(chunk_ids) > 1 else 0
    held = set(chunk_ids[:n_held])
    return [ex for ex in examples if ex.chunk_id not in held], [ex for ex in examples if ex.chunk_id in held]


# -- datasets in the shapes TRL takes --------------------------------------------------------------


def sft_rows(examples: Sequence[Example], feedback_sft: Sequence[dict] = ()) -> list[dict]:
    """{prompt, completion} rows: standard (not conversational) text, the prompt already rendered."""
    return [{"prompt": ex.prompt, "completion": ex.target} for ex in examples] + list(feedback_sft)


def kto_rows(examples: Sequence[Example], feedback_kto: Sequence[dict] = ()) -> list[dict]:
    """{prompt, completion, label} rows: targets desirable, mistakes undesirable."""
    rows = []
    for ex in examples:
        rows.append({"prompt": ex.prompt, "completion": ex.target, "label": True})
        rows.extend({"prompt": ex.prompt, "completion": bad, "label": False} for bad in ex.rejected)
    return rows + list(feedback_kto)


def dpo_rows(examples: Sequence[Example], feedback_dpo: Sequence[dict] = ()) -> list[dict]:
    """{prompt, chosen, rejected} rows: each target against each of its mistakes."""
    rows = [{"prompt": ex.prompt, "chosen": ex.target, "rejected": bad} for ex in examples for bad in ex.rejected]
    return rows + list(feedback_dpo)


def data_hash(*row_lists: Sequence[dict]) -> str:
    digest = hashlib.sha256()
    for rows in row_lists:
        for row in rows:
            digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def save_examples(examples: Sequence[Example], path: Path) -> None:
    with atomic_file(path) as fh:
        for ex in examples:
            fh.write(json.dumps(asdict(ex), ensure_ascii=False) + "\n")


def load_examples(path: Path) -> list[Example]:
    return [Example(**json.loads(line)) for line in path.open(encoding="utf-8") if line.strip()]
