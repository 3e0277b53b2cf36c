"""The tuning gate: a candidate adapter is activated only when it answers better than the
active model on the same held-out questions and does not regress on the user's feedback.

Both models answer every held-out question with the same given passages (evaluate_answers,
the code behind `ragbot eval answers`). The score is the mean of four rates, each in 0..1
with higher better: ROUGE-L against the reference, refusal on unanswerable questions, answering
(not refusing) answerable ones, and citation accuracy. The candidate must beat the active
model's score by MIN_GAIN, lose no single rate by more than MAX_DROP (or by more than one
question's worth, 1/n, when a rate is measured on fewer than 1/MAX_DROP = 20 questions: on a
small held-out set one question is noise), and pass at least as many feedback regression cases:
- a thumbs-up answer must stay correct: the same refusal or not, and when it answered, a reply
  with token F1 >= SAME_ANSWER_F1 against the liked answer;
- a thumbs-down answer must change: a different refusal decision, or token F1 below
  SAME_ANSWER_F1 against it; with a correction, the reply must also be closer to the
  correction than to the rejected answer.
A model with an answerability check replays through it, as it would answer in the chat.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .answer import REFUSAL, says_it_does_not_know
from .evaluate import evaluate_answers, save_run, token_f1

MIN_GAIN = 0.01
MAX_DROP = 0.05
SAME_ANSWER_F1 = 0.5
SCORED = ("rougeL", "refusal_rate_unanswerable", "answer_rate_answerable", "citation_accuracy")
# How many questions each rate is measured on (keys of the evaluate_answers summary).
_COUNT_OF = {"rougeL": "n_answerable", "refusal_rate_unanswerable": "n_unanswerable",
             "answer_rate_answerable": "n_answerable", "citation_accuracy": "n_cited"}


@dataclass
class GateResult:
    active: dict  # evaluate_answers summary plus regression results
    candidate: dict
    promote: bool
    reasons: list[str] = field(default_factory=list)

    def table(self) -> str:
        """The comparison as a markdown table."""
        rows = ["| metric | active | candidate | change |", "| --- | ---: | ---: | ---: |"]
        keys = ("score", *SCORED, "refusal_rate_answerable", "token_f1", "groundedness",
                "regression_pass_rate", "answer_words_mean", "latency_ms_p50")
        for key in keys:
            a, c = self.active.get(key), self.candidate.get(key)
            change = f"{c - a:+.3f}" if isinstance(a, (int, float)) and isinstance(c, (int, float)) else "–"
            rows.append(f"| {key} | {_fmt(a)} | {_fmt(c)} | {change} |")
        verdict = "**activated**" if self.promote else "**kept, not activated**"
        return "\n".join(rows) + f"\n\nCandidate {verdict}: " + "; ".join(self.reasons) + "\n"


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def score(summary: dict) -> float:
    values = [summary[k] for k in SCORED if summary.get(k) is not None]
    return sum(values) / len(values) if values else 0.0


def _with_rates(summary: dict) -> dict:
    summary = dict(summary)
    refused = summary.get("refusal_rate_answerable")
    summary["answer_rate_answerable"] = None if refused is None else 1.0 - refused
    summary["score"] = score(summary)
    return summary


def replay(bot, generator, case: dict, max_new_tokens: int) -> str:
    """The generator's reply now to a voted answer's exact prompt. A generator with an
    answerability check decides as the chatbot does: the refusal if the passages shown (as they
    read now) fail the check, otherwise a reply that may not open with the refusal."""
    check = generator.answerability
    if check is None:
        return generator.generate(case["prompt"], max_new_tokens).text
    stored = bot.store.chunks(case["chunk_ids"])
    texts = [stored[i].text for i in case["chunk_ids"] if i in stored]
    if texts and check.lacks_answer(check.measure(case["question"], texts, bot.embedder)):
        return REFUSAL
    return generator.generate(case["prompt"], max_new_tokens, avoid_start=REFUSAL).text


def regression_check(bot, generator, cases: Sequence[dict], max_new_tokens: int) -> list[dict]:
    """Replay each voted answer's exact prompt and judge the reply (see the module docstring)."""
    results = []
    for case in cases:
        reply = replay(bot, generator, case, max_new_tokens)
        refused = says_it_does_not_know(reply)
        before_refused = says_it_does_not_know(case["answer"])
        similar = not refused and not before_refused and token_f1(reply, case["answer"]) >= SAME_ANSWER_F1
        same = (refused and before_refused) or similar
        if case["vote"] == 1 and not case["correction"]:
            passed = same
        else:
            passed = not same
            if case["correction"]:
                passed = token_f1(reply, case["correction"]) > token_f1(reply, case["answer"])
        results.append({"answer_id": case["answer_id"], "vote": case["vote"], "reply": reply, "passed": passed})
    return results


def run_gate(bot, active_generator, candidate_generator, rows: list[dict], cases: Sequence[dict],
             out: Path | None = None) -> GateResult:
    """Evaluate both generators on `rows` and the feedback `cases`; decide; write the runs to `out`."""
    summaries = {}
    for label, generator in (("active", active_generator), ("candidate", candidate_generator)):
        bot.use_generator(generator)
        summary, per_question = evaluate_answers(bot, rows)
        regression = regression_check(bot, generator, cases, bot.settings.max_new_tokens)
        summary["regression_cases"] = len(regression)
        summary["regression_pass_rate"] = (sum(r["passed"] for r in regression) / len(regression)
                                           if regression else None)
        summaries[label] = _with_rates(summary)
        if out is not None:
            save_run(out / label, summaries[label], per_question)
            (out / label / "regression.json").write_text(json.dumps(regression, indent=2))
    result = decide(summaries["active"], summaries["candidate"])
    if out is not None:
        from .report import write_report

        write_report(out / "report", out / "candidate", out / "active")
        (out / "gate.md").write_text(result.table())
        (out / "gate.json").write_text(json.dumps(asdict(result), indent=2))
    return result


def decide(active: dict, candidate: dict) -> GateResult:
    active, candidate = _with_rates(active), _with_rates(candidate)
    reasons = []
    gain = candidate["score"] - active["score"]
    ok = gain >= MIN_GAIN
    reasons.append(f"score {candidate['score']:.3f} vs {active['score']:.3f} ({gain:+.3f}, needs {MIN_GAIN:+.2f})")
    for key in SCORED:
        a, c = active.get(key), candidate.get(key)
        n = candidate.get(_COUNT_OF[key]) or 0
        allowed = max(MAX_DROP, 1 / n if n else 0.0)
        if a is not None and c is not None and c < a - allowed - 1e-9:
            ok = False
            reasons.append(f"{key} drops {a:.3f} -> {c:.3f} (more than {allowed:.3f})")
    a_reg, c_reg = active.get("regression_pass_rate"), candidate.get("regression_pass_rate")
    if a_reg is not None and c_reg is not None:
        if c_reg < a_reg:
            ok = False
        reasons.append(f"feedback regression pass rate {c_reg:.3f} vs {a_reg:.3f}")
    return GateResult(active=active, candidate=candidate, promote=ok, reasons=reasons)
