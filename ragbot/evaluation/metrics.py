"""Evaluation: retrieval quality on BEIR-style data sets, and answer quality on QA files.

The metric functions take plain dicts and lists, so they can be checked by hand; the two
runners (`evaluate_retrieval`, `evaluate_answers`) drive a RagBot through the same code paths
users take (ingest, search, ask).
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragbot.errors import RagbotError

# -- retrieval metrics (standard definitions, as in trec_eval / BEIR) -------------------------


def ndcg_at_k(ranked: Sequence[str], relevant: dict[str, int], k: int = 10) -> float:
    """nDCG@k with linear gains: sum(rel_i / log2(i + 1)) over the ideal ordering's sum."""
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at_k(ranked: Sequence[str], relevant: dict[str, int], k: int = 10, min_grade: int = 1) -> float:
    """The share of the documents graded at least `min_grade` that are in the first k."""
    wanted = {doc for doc, grade in relevant.items() if grade >= min_grade}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0


def mrr_at_k(ranked: Sequence[str], relevant: dict[str, int], k: int = 10, min_grade: int = 1) -> float:
    for i, doc in enumerate(ranked[:k]):
        if relevant.get(doc, 0) >= min_grade:
            return 1.0 / (i + 1)
    return 0.0


# -- answer metrics ---------------------------------------------------------------------------

_WORD = re.compile(r"\w+")
_CITATION_MARK = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")


def _tokens(text: str) -> list[str]:
    return _WORD.findall(_CITATION_MARK.sub(" ", text).lower())


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = _tokens(prediction), _tokens(reference)
    common = sum((Counter(pred) & Counter(ref)).values())
    if not common:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def reference_recall(prediction: str, reference: str) -> float:
    """The share of the reference's words found in the prediction (each as often as the
    reference has it): whether a reply holds the answer at all, however much else it says.
    ROUGE-L's precision makes a long reply that holds it score like a short one that does not."""
    pred, ref = _tokens(prediction), _tokens(reference)
    if not ref:
        return 0.0
    return sum((Counter(pred) & Counter(ref)).values()) / len(ref)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1: from the longest common subsequence of lower-cased word tokens.

    Not rouge-score's: its tokenizer keeps only a-z and 0-9, so a German or French answer would
    lose every accented word. Here a word is a run of letters or digits of any script."""
    pred, ref = _tokens(prediction), _tokens(reference)
    if not pred or not ref:
        return 0.0
    previous = [0] * (len(ref) + 1)
    for p in pred:
        current = [0]
        for j, r in enumerate(ref):
            current.append(previous[j] + 1 if p == r else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    if not lcs:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_of(metric, prediction: str, references: Sequence[str]) -> float:
    return max((metric(prediction, ref) for ref in references), default=0.0)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (q in 0..100), as numpy's default."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# -- BEIR data ----------------------------------------------------------------------------------


@dataclass
class BeirData:
    corpus: dict[str, tuple[str, str]]  # doc id -> (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]  # query id -> doc id -> grade
    hit_grade: int = 1  # the least grade that recall and MRR count as found


def load_beir(directory: Path, split: str = "test") -> BeirData:
    directory = Path(directory)
    parts = sorted(directory.glob("corpus.part*.jsonl")) or [directory / "corpus.jsonl"]
    qrels_file = directory / "qrels" / f"{split}.tsv"
    for needed in [*parts, directory / "queries.jsonl", qrels_file]:
        if not needed.is_file():
            raise RagbotError(f"{needed}: missing; a BEIR folder has corpus.jsonl (or corpus.part*.jsonl), "
                              f"queries.jsonl and qrels/{split}.tsv")
    corpus: dict[str, tuple[str, str]] = {}
    for part in parts:
        for n, line in enumerate(part.open(encoding="utf-8"), start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                    corpus[str(row["_id"])] = (row.get("title") or "", row["text"])
                except (json.JSONDecodeError, KeyError) as exc:
                    raise RagbotError(f"{part}:{n}: not a BEIR corpus row ({exc})") from None
    queries = {}
    for line in (directory / "queries.jsonl").open(encoding="utf-8"):
        if line.strip():
            row = json.loads(line)
            queries[str(row["_id"])] = row["text"]
    qrels: dict[str, dict[str, int]] = {}
    for n, line in enumerate(qrels_file.open(encoding="utf-8")):
        fields = line.rstrip("\n").split("\t")
        if n == 0 and fields[0] == "query-id":
            continue
        if len(fields) >= 3:
            qrels.setdefault(fields[0], {})[fields[1]] = int(fields[2])
    qrels = {q: docs for q, docs in qrels.items() if q in queries}
    return BeirData(corpus=corpus, queries=queries, qrels=qrels)


def write_beir_documents(data: BeirData, folder: Path) -> int:
    """One Markdown file per corpus document (title as heading), so the normal ingest path
    indexes them; files whose content is already right are left alone. Returns files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for doc_id, (title, text) in data.corpus.items():
        path = folder / f"{_safe_name(doc_id)}.md"
        content = f"# {title}\n\n{text}\n" if title else f"{text}\n"
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            written += 1
    return written


def _safe_name(doc_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", lambda m: f"%{ord(m.group()):06x}", doc_id)


def _doc_id_of(source: str) -> str:
    stem = Path(source).stem
    return re.sub(r"%([0-9a-f]{6})", lambda m: chr(int(m.group(1), 16)), stem)


@dataclass
class RetrievalResult:
    summary: dict
    per_query: list[dict] = field(default_factory=list)


def chunk_unit(passage) -> str:
    """What a judged query's relevance names when it names chunks (`feedback_judgements`)."""
    return str(passage.chunk_id)


def feedback_judgements(liked: Sequence[dict], stored_ids: set[int]) -> BeirData:
    """Liked answers (`FeedbackLog.liked_passages`) as judged queries: the question, and the
    chunks its answer cited as the relevant ones, those still stored. A question liked twice
    counts once; one whose cited chunks are all gone (re-ingested, removed) is left out."""
    queries, qrels, seen = {}, {}, set()
    for row in liked:
        relevant = {str(c): 1 for c in row["chunk_ids"] if c in stored_ids}
        if relevant and row["question"] not in seen:
            seen.add(row["question"])
            queries[row["answer_id"]] = row["question"]
            qrels[row["answer_id"]] = relevant
    return BeirData(corpus={}, queries=queries, qrels=qrels)


CITED = 2  # a cited chunk's grade in `graded_judgements`; the other chunks of its document are 1


def graded_judgements(store, cited: dict[str, Sequence[int]]) -> dict[str, dict[str, int]]:
    """{key: {chunk id: grade}} for questions judged by the chunks their answers cited: the
    cited chunks at grade `CITED`, the other chunks of their documents at 1. The cited chunk is
    what the search of the day ranked high, so judged by it alone a search that ranks first
    another chunk of the same document scores a miss (docs/benchmarks.md §11); the grade keeps
    the cited chunk best. A cited chunk no longer stored judges only itself."""
    chunks = store.chunks(sorted({c for ids in cited.values() for c in ids}))
    judged = {}
    for key, ids in cited.items():
        sources = sorted({chunks[c].source for c in ids if c in chunks})
        grades = {str(c): 1 for c in store.chunk_ids_of(sources).tolist()}
        judged[key] = grades | {str(c): CITED for c in ids}
    return judged


def graded_feedback(liked: Sequence[dict], store) -> BeirData:
    """`feedback_judgements` graded as the retriever gate grades (`graded_judgements`): nDCG
    credits another chunk of a cited document, recall and MRR count the cited chunks."""
    data = feedback_judgements(liked, set(store.chunk_ids().tolist()))
    cited = {q: [int(c) for c in relevant] for q, relevant in data.qrels.items()}
    return BeirData(corpus={}, queries=data.queries, qrels=graded_judgements(store, cited), hit_grade=CITED)


def evaluate_retrieval(bot, data: BeirData, k: int = 10, chunks_per_query: int = 100,
                       unit: Callable | None = None) -> RetrievalResult:
    """Rank documents (best chunk score per document) for every judged query; with `unit`
    (`chunk_unit`), rank what it names for each passage instead."""
    unit = unit or (lambda passage: _doc_id_of(passage.source))
    query_ids = sorted(data.qrels)
    if query_ids:
        # Untimed: the first search loads what the mode reads (the embedder, the indexes), which
        # the first mode compared was charged alone (helper-83's drive: dense 582 ms a query, the
        # others 16).
        bot.batch_search([data.queries[query_ids[0]]], k=max(chunks_per_query, k))
    started = time.perf_counter()
    results = bot.batch_search([data.queries[q] for q in query_ids], k=max(chunks_per_query, k))
    seconds = time.perf_counter() - started
    per_query = []
    for qid, passages in zip(query_ids, results):
        ranked: list[str] = []
        for p in passages:
            doc = unit(p)
            if doc not in ranked:
                ranked.append(doc)
        relevant = data.qrels[qid]
        per_query.append({
            "query_id": qid,
            "query": data.queries[qid],
            "ndcg@10": ndcg_at_k(ranked, relevant, 10),
            f"recall@{k}": recall_at_k(ranked, relevant, k, data.hit_grade),
            "mrr@10": mrr_at_k(ranked, relevant, 10, data.hit_grade),
            "top": ranked[:k],
            "relevant": sorted(d for d, g in relevant.items() if g >= data.hit_grade),
        })
    n = len(per_query)
    summary = {
        "ndcg@10": sum(r["ndcg@10"] for r in per_query) / n if n else 0.0,
        f"recall@{k}": sum(r[f"recall@{k}"] for r in per_query) / n if n else 0.0,
        "mrr@10": sum(r["mrr@10"] for r in per_query) / n if n else 0.0,
        "queries": n,
        "search_ms_per_query": seconds * 1000 / n if n else 0.0,
    }
    if data.corpus:  # judged by documents (BEIR); liked answers judge chunks and name no corpus
        summary["documents"] = len(data.corpus)
    if f"recall@{k}" != "recall@10":
        summary["recall@10"] = sum(recall_at_k(r["top"], data.qrels[r["query_id"]], 10, data.hit_grade) for r in per_query) / n if n else 0.0
    return RetrievalResult(summary=summary, per_query=per_query)


def compare_retrieval(bot, data: BeirData, modes: Sequence[str] = ("dense", "bm25", "hybrid"),
                      k: int = 10, unit: Callable | None = None) -> dict[str, RetrievalResult]:
    """`evaluate_retrieval` for each retrieval mode on the same index, with each mode's
    per-query wins and losses (nDCG@10) against the first mode, and its search latency. A mode
    "hybrid@shipped" (or dense, bm25) searches as if no tuned embedder ranked."""
    results = {mode: evaluate_retrieval(_searching(bot, mode), data, k=k, unit=unit) for mode in modes}
    base = results[modes[0]].per_query
    for mode, result in results.items():
        pairs = list(zip(base, result.per_query))
        result.summary["mode"] = mode
        result.summary[f"wins_vs_{modes[0]}"] = sum(r["ndcg@10"] > b["ndcg@10"] + 1e-9 for b, r in pairs)
        result.summary[f"losses_vs_{modes[0]}"] = sum(r["ndcg@10"] < b["ndcg@10"] - 1e-9 for b, r in pairs)
        result.summary["ndcg@10_ci95"] = bootstrap_ci([r["ndcg@10"] for r in result.per_query])
        if mode != modes[0]:
            result.summary[f"ndcg@10_gain_vs_{modes[0]}"] = paired_difference(
                [b["ndcg@10"] for b, _ in pairs], [r["ndcg@10"] for _, r in pairs])
    return results


RETRIEVAL_MODES = ("dense", "bm25", "hybrid")


def _searching(bot, mode: str):
    """The bot that searches in `mode`: a retrieval setting, optionally "@shipped"."""
    retrieval, _, ranking = mode.partition("@")
    if retrieval not in RETRIEVAL_MODES or ranking not in ("", "shipped"):
        raise RagbotError(f"unknown retrieval mode {mode!r}: use {', '.join(RETRIEVAL_MODES)}, "
                          f"each optionally with @shipped (the shipped embedder ranks)")
    searching = bot.with_settings(retrieval=retrieval)
    return searching.with_shipped_ranking() if ranking else searching


# -- answers ---------------------------------------------------------------------------------


def load_qa(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(Path(path).open(encoding="utf-8"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RagbotError(f"{path}:{n}: not JSON ({exc})") from None
        if not isinstance(row.get("question"), str) or not isinstance(row.get("answers", []), list):
            raise RagbotError(f"{path}:{n}: needs 'question' (text) and 'answers' (a list, empty if unanswerable)")
        previous = row.get("previous")
        if previous is not None and not (isinstance(previous, str) or (
                isinstance(previous, list) and all(isinstance(q, str) and q.strip() for q in previous))):
            raise RagbotError(f"{path}:{n}: 'previous' is the question asked before (text) "
                              f"or the questions asked before, oldest first (a list of texts, none empty)")
        row.setdefault("answers", [])
        row.setdefault("answerable", bool(row["answers"]))
        rows.append(row)
    if not rows:
        raise RagbotError(f"{path}: no questions")
    return rows


def _is_gold(citation, gold: Sequence[str]) -> bool:
    names = {str(citation.chunk_id), citation.source, Path(citation.source).name}
    return bool(names & {str(g) for g in gold})


def earlier_questions(row: dict) -> list[str]:
    """The questions a QA row's conversation asked before its question, oldest first: its
    "previous" (one question, or a list of them)."""
    previous = row.get("previous") or []
    return [previous] if isinstance(previous, str) else list(previous)


def evaluate_answers(bot, rows: list[dict], progress=None) -> tuple[dict, list[dict]]:
    """Ask every question; score answers against references. Returns (summary, per question).

    A row with "previous" is a follow-up: the previous question (or questions, a list) is asked
    first, and the row's question goes as the next turn of that conversation (RagBot.next_turn:
    the chat page's standalone query and history). Groundedness is measured without the
    pipeline's own models: the share of the answer's words that stand in the passages it cites
    (0 when it cites none); refused answers are not counted there. The summary holds bootstrap
    95% intervals (`ci95`) and the rates per row kind (`by_kind`: the row's "kind", else its
    "category").
    """
    per_question = []
    for i, row in enumerate(rows):
        trace: dict = {}
        if row.get("previous"):
            trace = bot.next_turn(earlier_questions(row), row["question"], passages=row.get("passages"))
        started = time.perf_counter()
        answer = bot.ask(row["question"], passages=row.get("passages"), record=False, **trace)
        latency_ms = (time.perf_counter() - started) * 1000
        refs = row["answers"]
        record = {
            "question": row["question"],
            "answerable": row["answerable"],
            "category": row.get("category", ""),
            "kind": row.get("kind") or row.get("category", ""),
            "answer": answer.answer,
            "refused": answer.refused,
            "refusal_reason": answer.refusal_reason,
            "evidence_score": answer.evidence_score,
            "latency_ms": latency_ms,
            "answer_words": len(_tokens(answer.answer)),
            "rougeL": None, "token_f1": None, "reference_recall": None, "citation_accuracy": None,
            "groundedness": None,
        }
        if row["answerable"] and refs:
            record["rougeL"] = 0.0 if answer.refused else best_of(rouge_l, answer.answer, refs)
            record["token_f1"] = 0.0 if answer.refused else best_of(token_f1, answer.answer, refs)
            record["reference_recall"] = 0.0 if answer.refused else best_of(reference_recall, answer.answer, refs)
        gold = row.get("gold_passage_ids") or row.get("gold_documents")
        if gold and answer.citations:
            record["citation_accuracy"] = sum(_is_gold(c, gold) for c in answer.citations) / len(answer.citations)
        if not answer.refused:
            record["groundedness"] = groundedness(answer.answer, [c.text for c in answer.citations])
        per_question.append(record)
        if progress:
            progress(i + 1, len(rows))
    summary = summarise(per_question)
    summary.update(model=bot.settings.generator, adapter=bot.answering_adapter(), answer_mode=bot.settings.answer_mode)
    return summary, per_question


def summarise(per_question: list[dict]) -> dict:
    """Means, refusal rates and their bootstrap 95% intervals, overall and per kind."""

    def values(key: str, subset) -> list[float]:
        return [r[key] for r in subset if r[key] is not None]

    def mean(key: str, subset=None) -> float | None:
        found = values(key, per_question if subset is None else subset)
        return sum(found) / len(found) if found else None

    answerable = [r for r in per_question if r["answerable"]]
    unanswerable = [r for r in per_question if not r["answerable"]]
    latencies = [r["latency_ms"] for r in per_question]
    refused_ans = [float(r["refused"]) for r in answerable]
    refused_una = [float(r["refused"]) for r in unanswerable]
    summary = {
        "n": len(per_question),
        "rougeL": mean("rougeL"),
        "token_f1": mean("token_f1"),
        "reference_recall": mean("reference_recall"),
        "refusal_rate_unanswerable": statistics.fmean(refused_una) if refused_una else None,
        "refusal_rate_answerable": statistics.fmean(refused_ans) if refused_ans else None,
        "citation_accuracy": mean("citation_accuracy"),
        "groundedness": mean("groundedness"),
        "n_answerable": len(answerable),
        "n_unanswerable": len(unanswerable),
        "n_cited": sum(r["citation_accuracy"] is not None for r in per_question),
        "answer_words_mean": statistics.fmean(r["answer_words"] for r in per_question) if per_question else 0.0,
        "latency_ms_p50": percentile(latencies, 50),
        "latency_ms_p95": percentile(latencies, 95),
        "ci95": {
            "rougeL": bootstrap_ci(values("rougeL", per_question)),
            "reference_recall": bootstrap_ci(values("reference_recall", per_question)),
            "refusal_rate_answerable": bootstrap_ci(refused_ans),
            "refusal_rate_unanswerable": bootstrap_ci(refused_una),
        },
    }
    kinds: dict[str, list[dict]] = {}
    for r in per_question:
        kinds.setdefault(r.get("kind") or "", []).append(r)
    summary["by_kind"] = {
        kind: {"n": len(rows), "rougeL": mean("rougeL", rows),
               "refusal_rate": statistics.fmean(float(r["refused"]) for r in rows)}
        for kind, rows in sorted(kinds.items())
    }
    return summary


def bootstrap_ci(values: Sequence[float], rounds: int = 2000, seed: int = 0) -> list[float] | None:
    """The 95% percentile-bootstrap interval of the mean of `values`."""
    import numpy as np

    if len(values) < 2:
        return None
    data = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(rounds, len(data)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def paired_difference(a: Sequence[float], b: Sequence[float], rounds: int = 2000, seed: int = 0) -> dict:
    """Mean of b - a over the same questions, with its paired-bootstrap 95% interval."""
    import numpy as np

    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    return {"mean": float(diff.mean()) if len(diff) else 0.0, "ci95": bootstrap_ci(diff.tolist(), rounds, seed)}


def groundedness(answer: str, cited_texts: Sequence[str]) -> float:
    """The share of the answer's words (citation marks left out) found in the cited passages;
    0 when it cites none. It reads words only, no model, so it cannot share the pipeline's errors."""
    said = _tokens(answer)
    if not said:
        return 0.0
    shown = {w for text in cited_texts for w in _tokens(text)}
    return sum(w in shown for w in said) / len(said)


def save_run(out: Path, summary: dict, records: list[dict], records_name: str = "per_question.jsonl") -> Path:
    """Write an evaluation run folder: summary.json and one JSON line per question or query."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    with open(out / records_name, "w", encoding="utf-8") as fh:
        for row in records:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out
