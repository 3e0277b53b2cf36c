"""RagBot: the Python API behind the CLI, the UI, evaluation and notebooks.

    bot = RagBot.open("~/my-ragbot")      # or RagBot.open() for RAGBOT_HOME / the default dir
    bot.ingest(["docs/"])
    bot.search("what is RAG?", k=5)
    bot.ask("what is RAG?").answer

Models load lazily, once per RagBot. Writes (ingest, remove) hold a lock on the data dir so two
processes never interleave; reads notice another process's writes and reload the index.
"""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .answer import (
    REFUSAL,
    build_prompt,
    check_citations,
    citations_for,
    cited_numbers,
    says_it_does_not_know,
    strip_invalid_citations,
)
from .answer_type import reply_refusal
from .errors import BusyError
from .feedback import FeedbackLog
from .index import VectorIndex
from .ingest import Ingester, IngestReport, ProgressFn
from .settings import Settings, load_settings
from .store import Store
from .types import Answer, Passage


class RagBot:
    def __init__(self, settings: Settings):
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(settings.db_path)
        self.feedback = FeedbackLog(self.store)
        self._embedder = None
        self._generator = None
        self._index: VectorIndex | None = None
        self._index_generation = -1
        self._load_lock = threading.RLock()

    @classmethod
    def open(cls, data_dir: str | Path | None = None, **overrides) -> "RagBot":
        return cls(load_settings(data_dir, **overrides))

    def close(self) -> None:
        self.store.close()

    # -- models and index, loaded on first use -----------------------------------------------

    @property
    def embedder(self):
        with self._load_lock:
            if self._embedder is None:
                from .embed import Embedder

                embedder = Embedder.load(self.settings)
                self.store.claim_embedder(embedder.name, embedder.dim)
                self._embedder = embedder
            return self._embedder

    @property
    def generator(self):
        with self._load_lock:
            if self._generator is None:
                from .generate import Generator

                self._generator = Generator.load(self.settings)
            return self._generator

    def with_settings(self, **overrides) -> "RagBot":
        """A RagBot on the same data dir with some settings changed, sharing the loaded embedder."""
        from .settings import with_overrides

        other = RagBot(with_overrides(self.settings, **overrides))
        other._embedder = self._embedder
        return other

    def use_generator(self, generator) -> None:
        """Answer with `generator` from now on (the tuning gate swaps candidate and active)."""
        with self._load_lock:
            self._generator = generator

    def _current_index(self) -> VectorIndex:
        """The FAISS index matching the database's generation, loaded or rebuilt as needed."""
        with self._load_lock:
            generation = self.store.generation()
            if self._index is not None and generation == self._index_generation:
                return self._index
            dim = self.embedder.dim
            index = VectorIndex.load(self.settings.index_dir, generation, dim)
            if index is None:  # first run, or a write was interrupted before the index was saved
                index = VectorIndex(dim)
                ids, vectors = self.store.all_vectors(dim)
                index.add(ids, vectors)
                if generation == self.store.generation():
                    index.save(self.settings.index_dir, generation)
            self._index, self._index_generation = index, generation
            return index

    @contextmanager
    def _writing(self) -> Iterator[Ingester]:
        lock_path = self.settings.data_dir / "write.lock"
        with open(lock_path, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BusyError(
                    f"another ragbot process is writing to {self.settings.data_dir}; try again when it is done"
                ) from None
            try:
                with self._load_lock:
                    ingester = Ingester(self.settings, self.store, self._current_index(), self.embedder)
                    yield ingester
                    self._index_generation = self.store.generation()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- writing ----------------------------------------------------------------------------

    def ingest(self, paths: Sequence[str | Path], prune: bool = False, progress: ProgressFn | None = None) -> IngestReport:
        with self._writing() as ingester:
            return ingester.ingest(paths, prune=prune, progress=progress)

    def remove(self, paths: Sequence[str | Path]) -> list[str]:
        with self._writing() as ingester:
            return ingester.remove(paths)

    def ensure_default_corpus(self, progress: ProgressFn | None = None) -> IngestReport | None:
        """Ingest the shipped corpus when the data dir holds no documents yet."""
        corpus = self.settings.default_corpus
        if self.store.counts()[0] > 0 or corpus is None or not Path(corpus).is_dir():
            return None
        return self.ingest([corpus], progress=progress)

    # -- reading ----------------------------------------------------------------------------

    def search(self, query: str, k: int | None = None) -> list[Passage]:
        return self.batch_search([query], k)[0]

    def batch_search(self, queries: Sequence[str], k: int | None = None) -> list[list[Passage]]:
        k = k or self.settings.top_k
        vectors = self.embedder.encode(list(queries), batch_size=self.settings.embed_batch_size)
        scores, ids = self._current_index().search(vectors, k)
        found = self.store.chunks([int(i) for row in ids for i in row if i >= 0])
        results = []
        for row_scores, row_ids in zip(scores, ids):
            passages = []
            for score, chunk_id in zip(row_scores, row_ids):
                chunk = found.get(int(chunk_id))
                if chunk is None:
                    continue
                passages.append(Passage(
                    chunk_id=chunk.id, source=chunk.source, title=chunk.title, section=chunk.section,
                    page=chunk.page, text=chunk.text, score=float(score), rank=len(passages) + 1,
                ))
            results.append(passages)
        return results

    def ask(
        self, question: str, k: int | None = None, temperature: float | None = None,
        passages: Sequence[str | dict] | None = None, record: bool = True, **trace,
    ) -> Answer:
        """Retrieve, generate and return the whole answer.

        `passages` (texts, or dicts with "text" and optional "id") replaces retrieval, to
        evaluate generation alone on given passages. With `record`, the answer and its trace
        go to the answer log (answer.id is set); `trace` may name conversation_id and turn.
        """
        answer = None
        for event in self._answer(question, k, temperature, stream=False, given=passages, record=record, **trace):
            answer = event
        assert isinstance(answer, Answer)
        return answer

    def ask_stream(
        self, question: str, k: int | None = None, temperature: float | None = None, record: bool = True, **trace,
    ) -> Iterator[str | Answer]:
        """Yield the answer's text in pieces as it is generated, then the finished Answer."""
        return self._answer(question, k, temperature, stream=True, record=record, **trace)

    def _answer(
        self, question: str, k: int | None, temperature: float | None, stream: bool,
        given: Sequence[str | dict] | None = None, record: bool = True,
        conversation_id: str | None = None, turn: int = 0, retrieval_query: str | None = None,
        history: Sequence[dict[str, str]] = (),
    ) -> Iterator[str | Answer]:
        settings = self.settings
        temperature = settings.temperature if temperature is None else temperature
        for event in self._make_answer(question, retrieval_query or question, k, temperature, stream, given, history):
            if isinstance(event, Answer) and record:
                params = {"temperature": temperature, "max_new_tokens": settings.max_new_tokens,
                          "top_k": k or settings.top_k, "prompt_passages": settings.prompt_passages,
                          "min_score": settings.min_score}
                if event.p_answer_missing is not None:
                    check = self.generator.answerability
                    params.update(p_answer_missing=round(event.p_answer_missing, 4),
                                  answerability_threshold=round(check.threshold, 4))
                self.feedback.record_answer(event, conversation_id, turn, retrieval_query, params)
            yield event

    def _make_answer(
        self, question: str, retrieval_query: str, k: int | None, temperature: float, stream: bool,
        given: Sequence[str | dict] | None, history: Sequence[dict[str, str]] = (),
    ) -> Iterator[str | Answer]:
        settings = self.settings
        started = time.perf_counter()
        passages = self.search(retrieval_query, k) if given is None else _given_passages(given)
        retrieve_ms = (time.perf_counter() - started) * 1000
        # A refusal on retrieval alone must not wait for the generator to load.
        if self._generator is not None:
            adapter = self._generator.adapter
        else:
            in_use = self.adapter_in_use()
            adapter = None if in_use == "none" else in_use
        common = dict(question=question, passages=passages, model=settings.generator, adapter=adapter)

        if not passages or passages[0].score < settings.min_score:
            if stream:
                yield REFUSAL
            yield Answer(answer=REFUSAL, refused=True, citations=[], prompt="", raw_reply="",
                         timings_ms={"retrieve": retrieve_ms, "generate": 0.0},
                         tokens={"prompt": 0, "completion": 0}, refusal_reason="low_retrieval_score", **common)
            return

        generator = self.generator
        prompt = build_prompt(
            question, passages[: settings.prompt_passages], render=generator.render, count_tokens=generator.count_tokens,
            budget=generator.context_tokens - settings.max_new_tokens, history=history,
        )
        check = generator.answerability
        avoid_start = p_missing = None
        if check is not None:
            t0 = time.perf_counter()
            row = check.measure(retrieval_query, [p.text for p in prompt.passages], self.embedder)
            p_missing = check.probability(row)
            check_ms = (time.perf_counter() - t0) * 1000
            if p_missing > check.threshold:
                if stream:
                    yield REFUSAL
                yield Answer(answer=REFUSAL, refused=True, citations=[], prompt=prompt.text, raw_reply="",
                             timings_ms={"retrieve": retrieve_ms, "answerability": check_ms, "generate": 0.0},
                             tokens={"prompt": 0, "completion": 0}, refusal_reason="passages_lack_answer",
                             p_answer_missing=p_missing, **common)
                return
            # The check decided the passages hold the answer, so the model may not open with the
            # refusal: left to itself, a tuned 135M model refused 47% of answerable questions.
            avoid_start = REFUSAL
        t0 = time.perf_counter()
        if stream:
            totals: dict = {}
            yield from generator.stream(prompt.text, settings.max_new_tokens, temperature, totals=totals,
                                        avoid_start=avoid_start)
            generation = totals["generation"]
        else:
            generation = generator.generate(prompt.text, settings.max_new_tokens, temperature, avoid_start=avoid_start)
        generate_ms = (time.perf_counter() - t0) * 1000

        reply = generation.text
        n_shown = len(prompt.passages)
        refusal_reason = "model_said_so" if says_it_does_not_know(reply) else None
        answer_text = reply
        if refusal_reason is None:
            answer_text, supported = check_citations(
                strip_invalid_citations(reply, n_shown), n_shown, self._similarity_to(prompt.passages)
            )
            if not supported:
                refusal_reason = "unsupported_answer"
            else:
                refusal_reason = reply_refusal(retrieval_query, answer_text, [p.text for p in prompt.passages])
        if refusal_reason:
            answer_text = REFUSAL
        numbers = [] if refusal_reason else cited_numbers(answer_text, n_shown)
        yield Answer(
            answer=answer_text,
            refused=refusal_reason is not None,
            citations=citations_for(numbers, prompt.passages),
            prompt=prompt.text,
            raw_reply=reply,
            timings_ms={"retrieve": retrieve_ms, "generate": generate_ms},
            tokens={"prompt": generation.prompt_tokens, "completion": generation.completion_tokens},
            refusal_reason=refusal_reason,
            p_answer_missing=p_missing,
            **common,
        )

    def _similarity_to(self, passages: Sequence[Passage]):
        """sentences -> cosine similarity of each sentence to each passage."""

        def similarity(sentences: list[str]):
            vectors = self.embedder.encode(sentences + [p.text for p in passages])
            return (vectors[: len(sentences)] @ vectors[len(sentences) :].T).tolist()

        return similarity

    def status(self) -> dict:
        docs, chunks = self.store.counts()
        return {
            "data_dir": str(self.settings.data_dir),
            "documents": docs,
            "chunks": chunks,
            "generation": self.store.generation(),
            "embedder": self.store.meta("embedder") or self.settings.embedder,
            "generator": self.settings.generator,
            "adapter": self.adapter_in_use(),
            "schema_version": self.store.schema_version(),
        }

    def adapter_in_use(self) -> str:
        """The adapter version answers come from ("none": the base model), without loading it."""
        from .registry import AdapterRegistry

        if self.settings.adapter != "active":
            return self.settings.adapter
        return AdapterRegistry(self.settings.adapters_dir).state()["active"] or "none"

def _given_passages(given: Sequence[str | dict]) -> list[Passage]:
    """Passages supplied by the caller instead of retrieved (scored 1.0, negative chunk ids).

    A dict may also carry "title", "section" and "page", shown in the passage's header."""
    passages = []
    for i, item in enumerate(given, start=1):
        if isinstance(item, str):
            item = {"text": item}
        ident = str(item.get("id", f"passage-{i}"))
        passages.append(Passage(chunk_id=-i, source=ident, title=item.get("title") or ident,
                                section=item.get("section") or "", page=item.get("page"),
                                text=item["text"], score=1.0, rank=i))
    return passages
