"""The tuning gate: a candidate adapter is activated only when it answers better than the
active model on the same held-out questions, with confidence, and does not regress on the
user's feedback.

Both models answer every held-out question with the same given passages (evaluate_answers,
the code behind `ragbot eval answers`), as the chat answers: evidence, threshold, then the answer.
Each question gets a utility in 0..1: ROUGE-L against the reference for an answerable question
(0 when refused), 1 for refusing an unanswerable one (0 for answering it). The candidate is
activated when the paired-bootstrap 95% interval of its mean utility gain lies above zero: on a
handful of questions, or a gain within the noise, it is kept but not activated. It must also pass
at least as many feedback regression cases:
- a thumbs-up answer must stay correct: the same refusal or not, and when it answered, a reply
  with token F1 >= SAME_ANSWER_F1 against the liked answer;
- a thumbs-down answer must change: a different refusal decision, or token F1 below
  SAME_ANSWER_F1 against it; with a correction, the reply must also be closer to the
  correction than to the rejected answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ragbot.answer.generation import REFUSAL, is_refusal
from ragbot.evaluation.metrics import evaluate_answers, paired_difference, save_run, token_f1

SAME_ANSWER_F1 = 0.5
# Below this many questions the bootstrap interval is too optimistic to decide on (with four
# questions that all gain, every resample gains): the candidate is kept, not activated.
MIN_QUESTIONS = 20


@dataclass
class GateResult:
    active: dict  # evaluate_answers summary plus regression results
    candidate: dict
    promote: bool
    reasons: list[str] = field(default_factory=list)

    def table(self) -> str:
        """The comparison as a markdown table."""
        rows = ["| metric | active | candidate | change |", "| --- | ---: | ---: | ---: |"]
        keys = ("utility", "rougeL", "refusal_rate_unanswerable", "refusal_rate_answerable", "citation_accuracy",
                "token_f1", "groundedness", "regression_pass_rate", "answer_words_mean", "latency_ms_p50")
        for key in keys:
            a, c = self.active.get(key), self.candidate.get(key)
            change = f"{c - a:+.3f}" if isinstance(a, (int, float)) and isinstance(c, (int, float)) else "–"
            rows.append(f"| {key} | {_fmt(a)} | {_fmt(c)} | {change} |")
        # Plain words (the terminal shows this too), as `ragbot model list` says them: passed / failed.
        verdict = "passed the gate: activated" if self.promote else "failed the gate: saved, not activated"
        return "\n".join(rows) + f"\n\nCandidate {verdict} (" + "; ".join(self.reasons) + ")\n"


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def utility(record: dict) -> float:
    """One question's worth, in 0..1 (see the module docstring)."""
    if record["answerable"]:
        return 0.0 if record["refused"] else float(record["rougeL"] or 0.0)
    return 1.0 if record["refused"] else 0.0


def replay(bot, case: dict) -> tuple[str, bool]:
    """The answer now (text, refused) to a voted answer's question, from the chunks it was
    answered from as they read now, made as the chat makes it with the bot's current generator."""
    stored = bot.store.chunks(case["chunk_ids"])
    given = [{"id": str(i), "text": stored[i].text, "title": stored[i].title, "section": stored[i].section,
              "page": stored[i].page} for i in case["chunk_ids"] if i in stored]
    if not given:  # every chunk it was answered from was re-ingested or removed
        return REFUSAL, True
    answer = bot.ask(case["question"], passages=given, record=False)
    return answer.answer, answer.refused


def regression_check(bot, cases: Sequence[dict]) -> list[dict]:
    """Replay each voted answer and judge the new one (see the module docstring)."""
    results = []
    for case in cases:
        reply, refused = replay(bot, case)
        before_refused = is_refusal(case["answer"])
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
    summaries, utilities = {}, {}
    for label, generator in (("active", active_generator), ("candidate", candidate_generator)):
        bot.use_generator(generator)
        summary, per_question = evaluate_answers(bot, rows)
        utilities[label] = [utility(r) for r in per_question]
        summary["utility"] = sum(utilities[label]) / len(utilities[label]) if utilities[label] else 0.0
        regression = regression_check(bot, cases)
        summary["regression_cases"] = len(regression)
        summary["regression_pass_rate"] = (sum(r["passed"] for r in regression) / len(regression)
                                           if regression else None)
        summaries[label] = summary
        if out is not None:
            save_run(out / label, summary, per_question)
            (out / label / "regression.json").write_text(json.dumps(regression, indent=2))
    result = decide(summaries["active"], summaries["candidate"], utilities["active"], utilities["candidate"])
    if out is not None:
        from ragbot.evaluation.report import write_report

        write_report(out / "report", out / "candidate", out / "active")
        (out / "gate.md").write_text(result.table())
        (out / "gate.json").write_text(json.dumps(asdict(result), indent=2))
    return result


def gain_is_clear(active: Sequence[float], candidate: Sequence[float], measure: str, questions: str,
                  seed: int = 0, too_few: str = "") -> tuple[bool, dict, str]:
    """The rule every gate decides by: (whether the paired-bootstrap 95% interval of the
    candidate's gain in `measure` lies above zero over at least MIN_QUESTIONS `questions`, the
    gain, the reason in words). `too_few`: what to do about too few questions."""
    gain = paired_difference(active, candidate, seed=seed)
    n = len(candidate)
    interval = f"[{gain['ci95'][0]:+.3f}, {gain['ci95'][1]:+.3f}]" if gain["ci95"] else "(none)"
    reason = f"{measure} gain {gain['mean']:+.3f}, 95% interval {interval} over {n} {questions}"
    if n < MIN_QUESTIONS:
        return False, gain, reason + f": too few to decide (needs {MIN_QUESTIONS}{too_few})"
    ok = gain["ci95"] is not None and gain["ci95"][0] > 0
    return ok, gain, reason + ("" if ok else ": not above zero")


def decide(active: dict, candidate: dict, active_utility: Sequence[float], candidate_utility: Sequence[float],
           seed: int = 0) -> GateResult:
    """Promote when the paired-bootstrap 95% interval of the utility gain is above zero and the
    feedback regression pass rate does not fall."""
    ok, gain, reason = gain_is_clear(active_utility, candidate_utility, "utility", "questions", seed,
                                     "; raise --gate-questions or --heldout")
    candidate = {**candidate, "utility_gain": gain}
    reasons = [reason]
    a_reg, c_reg = active.get("regression_pass_rate"), candidate.get("regression_pass_rate")
    if a_reg is not None and c_reg is not None:
        if c_reg < a_reg:
            ok = False
        reasons.append(f"feedback regression pass rate {c_reg:.3f} vs {a_reg:.3f}")
    return GateResult(active=active, candidate=candidate, promote=ok, reasons=reasons)
