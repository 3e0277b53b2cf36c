"""Fit the defaults `evidence_threshold` and `correction_match` on the shipped corpus, by the
code `ragbot tune` uses.

Ingests corpus/ into a scratch data dir, makes questions about its chunks the way tuning does
(structure and the local generator, trainset.py), shows each with its gold chunk and with the
chunk or its whole document withheld (trainset.answerability_examples), scores the best evidence
sentence of each (evidence.py), and fits the threshold (answerability.fit); the same questions,
each belonging to its chunk's document, fit the correction match threshold (corrections.fit).
No hand-written question set is read. Prints both thresholds and their fit reports; the values
go into settings.py as the defaults for data dirs that have not been tuned (docs/calibration.md).

    python scripts/calibrate_evidence.py [--model-questions 80] [--seed 0]
"""

import argparse
import json
import random
import tempfile
from pathlib import Path

from ragbot import RagBot
from ragbot.answer import answerability, corrections
from ragbot.learn import trainset
from ragbot.learn.tune import best_evidence

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model-questions", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--false-refusal", type=float, default=answerability.FALSE_REFUSAL)
    args = parser.parse_args()
    bot = RagBot.open(args.data_dir or tempfile.mkdtemp(prefix="ragbot-calibrate-"), default_corpus=None)
    bot.ingest([ROOT / "corpus"])
    chunks = bot.store.all_chunks()
    rng = random.Random(args.seed)
    candidates = trainset.structural_questions(chunks, bot.abbreviations())
    generator = bot.generator

    def write(sentence: str) -> str:
        prompt = generator.render(trainset.question_writer_messages(sentence)) + "Question:"
        return generator.generate(prompt, max_new_tokens=32).text

    candidates += trainset.model_questions(chunks, write, args.model_questions, rng, lambda i, n: None,
                                           abbreviations=bot.abbreviations())
    report = trainset.CheckReport()
    kept = trainset.check_candidates(bot, candidates, report)
    examples = trainset.answerability_examples(bot, kept, random.Random(args.seed + 1))
    scores = [best_evidence(ex.question, ex.passages, bot.evidence_scorer, bot.abbreviations()) for ex in examples]
    check = answerability.fit(scores, [ex.answerable for ex in examples], scorer=bot.evidence_scorer.name,
                              false_refusal=args.false_refusal)
    print(json.dumps({"questions_kept": dict(report.kept), "examples": len(examples), **check.fit_report}, indent=2))
    print(f"evidence_threshold = {check.threshold:.2f}")
    match = corrections.fit_on_questions(bot, [(c.question, c.chunk_id) for c, _ in kept])
    print(json.dumps(match.fit_report, indent=2))
    print(f"correction_match = {match.threshold:.2f}")


if __name__ == "__main__":
    main()
