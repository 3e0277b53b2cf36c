"""Does feedback change what ragbot answers? The loop a user runs, simulated end to end.

On a fresh data dir with the shipped corpus:
1. the 30 questions of bench/data/feedback_paraphrases.jsonl (a development set) are asked and
   recorded as the chat records them; a simulated user votes on each answer: thumbs-up when it
   matches the reference (ROUGE-L >= --judge), else thumbs-down with the reference as correction;
2. `ragbot tune --quick` runs (skip with --no-tune: corrections act without tuning);
3. the voted questions, a paraphrase of each, and questions nobody voted on are asked again.
Reported, with bootstrap 95% intervals: the share of corrected questions, and of paraphrases of
them, answered with the correction's content (ROUGE-L against the correction >= --judge); the
share of thumbs-up questions still answered the same; the utility of the never-voted questions
(gate.utility: ROUGE-L when answerable, 1 for refusing an unanswerable one) before and after,
paired. The judge is ROUGE-L against the references, not the pipeline's embedder or threshold.

    python bench/bench_feedback.py [--no-tune] [--seed 0] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, machine, share  # noqa: E402

from ragbot import RagBot  # noqa: E402
from ragbot.evaluation.metrics import best_of, evaluate_answers, load_qa, paired_difference, rouge_l  # noqa: E402
from ragbot.learn.gate import utility  # noqa: E402

DATA = ROOT / "bench" / "data" / "feedback_paraphrases.jsonl"
DEV = ROOT / "tests" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=None, help="data dir to use (default: a new temporary one)")
    parser.add_argument("--no-tune", action="store_true", help="measure corrections without running tune")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--judge", type=float, default=0.5, help="ROUGE-L that counts as the same answer")
    args = parser.parse_args()
    started = time.time()

    bot = RagBot.open(args.work or tempfile.mkdtemp(prefix="ragbot-feedback-"))
    bot.ensure_default_corpus()
    voted_rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    voted_questions = {row["question"] for row in voted_rows}
    # Never voted on: the development sets' other questions (answerable and not).
    unvoted = [row for row in load_qa(DEV / "corpus_qa.jsonl") + load_qa(DEV / "corpus_qa_blind.jsonl")
               if row["question"] not in voted_questions]
    _, before = evaluate_answers(bot, unvoted)

    votes = []
    for i, row in enumerate(voted_rows):
        answer = bot.ask(row["question"], conversation_id=f"drill-{i}", turn=1)
        right = not answer.refused and best_of(rouge_l, answer.answer, row["answers"]) >= args.judge
        if right:
            bot.feedback.set_feedback(answer.id, 1)
        else:
            bot.feedback.set_feedback(answer.id, -1, correction=row["answers"][0])
        votes.append({**row, "first_answer": answer.answer, "right": right})
    print(f"voted: {sum(v['right'] for v in votes)} thumbs-up, {sum(not v['right'] for v in votes)} corrected")

    tuned = None
    if not args.no_tune:
        from ragbot.learn.tune import TuneConfig, tune

        result = tune(bot, TuneConfig.quick(seed=args.seed), new=True)
        tuned = {"version": result.version, "activated": result.activated,
                 "gate": result.gate.reasons if result.gate else None}
        bot = RagBot.open(bot.settings.data_dir)  # as the user's next session sees it

    corrected, paraphrased, kept = [], [], []
    for v in votes:
        again = bot.ask(v["question"], record=False)
        reworded = bot.ask(v["paraphrase"], record=False)
        if v["right"]:
            kept.append(not again.refused and rouge_l(again.answer, v["first_answer"]) >= args.judge)
        else:
            correction = v["answers"][0]
            corrected.append(not again.refused and rouge_l(again.answer, correction) >= args.judge)
            paraphrased.append(not reworded.refused and rouge_l(reworded.answer, correction) >= args.judge)
    _, after = evaluate_answers(bot, unvoted)
    u_before = [utility(r) for r in before]
    u_after = [utility(r) for r in after]
    report = {
        "machine": machine(),
        "tuned": tuned,
        "voted": len(votes), "thumbs_up": len(kept), "corrected": len(corrected),
        "corrected_answered_with_correction": share(corrected),
        "paraphrases_answered_with_correction": share(paraphrased),
        "thumbs_up_answered_the_same": share(kept),
        "unvoted": {"n": len(unvoted), "utility_before": sum(u_before) / len(u_before),
                    "utility_after": sum(u_after) / len(u_after), "change": paired_difference(u_before, u_after),
                    "answers_changed": sum(a["answer"] != b["answer"] for a, b in zip(before, after))},
        "seconds": round(time.time() - started, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "feedback.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
