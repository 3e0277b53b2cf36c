"""Would "the same answer" find a reworded question's correction the cosine misses?

A reworded question reaches its correction only when the two questions' embeddings reach
`correction_match` (0.79 on the shipped corpus): the frozen corrections set found paraphrases
reached 0.306 of the time (docs/benchmarks.md §42). A second signal measured here: the answer
ragbot would give. A rewording of a corrected question is likely to be given the very answer
the user rejected, and a question asking something else another one, in any language. The rule
tried: the cosine reaches `correction_match`, or it reaches a lower `t` and the answer ragbot
gives now is the answer that was corrected.

On a fresh data dir with the shipped corpus, every question of bench/data/feedback_paraphrases.jsonl
(30 questions, each with a paraphrase; a development set) and of tests/data/corpus_qa*.jsonl
is answered (extract mode, no feedback). Positives: the 30 pairs, each question taken as
corrected and its paraphrase asked. Negatives: every question with references taken as corrected
(its first reference as the correction), and every other such question whose references the
correction does not share (best ROUGE-L below 0.5, a judge that is not the embedder) asked; a
negative "reaches" when the rule would hand it the correction. Reported for a range of `t`:
pairs reached, and negative questions taken over by at least one correction.

    python bench/explore_correction_evidence.py [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, save, share  # noqa: E402

from ragbot import RagBot  # noqa: E402
from ragbot.evaluation.metrics import best_of, load_qa, rouge_l  # noqa: E402

PAIRS = ROOT / "bench" / "data" / "feedback_paraphrases.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=None, help="data dir to use (default: a new temporary one)")
    parser.add_argument("--judge", type=float, default=0.5, help="ROUGE-L between references that counts as the same answer")
    args = parser.parse_args()
    bot = RagBot.open(args.work or tempfile.mkdtemp(prefix="ragbot-correction-evidence-"))
    bot.ensure_default_corpus()
    threshold = bot.settings.correction_match

    references: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests" / "data").glob("corpus_qa*.jsonl")):
        for row in load_qa(path):
            references.setdefault(row["question"], row.get("answers") or [])
    pairs = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    for pair in pairs:
        references.setdefault(pair["question"], pair["answers"])
        references.setdefault(pair["paraphrase"], pair["answers"])
    questions = list(references)
    answers = {}
    for question in questions:
        answer = bot.ask(question, record=False)
        answers[question] = None if answer.refused else answer.answer  # every refusal is one answer
    index = {q: i for i, q in enumerate(questions)}
    similarity = np.asarray(bot.embedder.encode(questions)) @ np.asarray(bot.embedder.encode(questions)).T

    partner = {p["question"]: p["paraphrase"] for p in pairs}
    partner.update({v: k for k, v in partner.items()})
    positives = [(similarity[index[p["question"]], index[p["paraphrase"]]], answers[p["question"]] == answers[p["paraphrase"]])
                 for p in pairs]
    judged = [q for q in questions if references[q]]
    negatives: dict[str, list[tuple[float, bool]]] = {q: [] for q in judged}
    for corrected in judged:
        correction = references[corrected][0]
        for asked in judged:
            if asked == corrected or partner.get(corrected) == asked:
                continue
            if best_of(rouge_l, correction, references[asked]) >= args.judge:
                continue  # the correction would be a right answer to it
            negatives[asked].append((similarity[index[corrected], index[asked]], answers[corrected] == answers[asked]))

    rows = []
    for low in (None, 0.75, 0.70, 0.65, 0.60, 0.55, 0.50):
        def reaches(cosine: float, same_answer: bool) -> bool:
            return cosine >= threshold or (low is not None and cosine >= low and same_answer)

        rows.append({"rule": f"cosine >= {threshold}" + ("" if low is None else f", or >= {low:.2f} with the same answer"),
                     "pairs_reached": share([reaches(c, s) for c, s in positives]),
                     "questions_taken_over": share([any(reaches(c, s) for c, s in found) for found in negatives.values()])})
    for row in rows:
        reached, taken = row["pairs_reached"], row["questions_taken_over"]
        print(f"{row['rule']:<52} pairs reached {reached['share']:.3f} [{reached['ci95'][0]:.3f}, {reached['ci95'][1]:.3f}] "
              f"of {reached['n']}; questions taken over {taken['share']:.3f} [{taken['ci95'][0]:.3f}, {taken['ci95'][1]:.3f}] "
              f"of {taken['n']}")
    print(f"pairs given the same answer: {sum(s for _, s in positives)} of {len(positives)}")
    print(f"written to {save('correction_evidence', {'threshold': threshold, 'rules': rows})}")


if __name__ == "__main__":
    main()
