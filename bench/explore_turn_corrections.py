"""Should a first question be matched to a correction by the corrected turn's own words alone?

A correction saved on a turn that ragbot searched joined with the question before it (a
follow-up, or a new subject joined because the data dir has too few logged questions to tell)
is stored with both texts: the joined retrieval query and the user's words of the turn.
`CorrectionMemory.match` asks both to reach the threshold (the lower cosine counts), so the same
words asked later as a conversation's first question compare with the joined query too, and may
miss the correction (helper-81's drive: "Which company made StyleGAN?" after a question on the
transformer). The alternative measured here: for a first question, the turn's words alone.

On a fresh data dir with the shipped corpus, every development conversation turn
(follow_ups_dev, follow_ups_same_sentence_dev, topic_changes_dev, off_topic_turns_dev; a turn
after its `previous` question) is searched as the chat would (`RagBot.standalone_query`). Each turn searched joined
becomes a correction whose answer is the row's reference (for a question the documents do not
answer, a text of the user's own that no reference shares). Then every first question of the
development sets (tests/data/corpus_qa*.jsonl, the conversations' `previous` questions and the
turns themselves) is matched against these corrections by both rules, at the `correction_match`
setting. Counted, with bootstrap 95% intervals:
- repeats found: a turn asked again alone gets its own correction. Reported apart for new
  subjects (topic_changes and off_topic_turns: the turn names its subject, so it should) and follow-ups (it names
  none: "And the generator?" alone asks nothing definite);
- wrong take-overs: a first question whose reference answers differ from the correction (best
  ROUGE-L of its references against the correction below --judge) is answered by it.
The judge is ROUGE-L between references, not the embedder or threshold being tested.

    python bench/explore_turn_corrections.py [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, machine, share  # noqa: E402

from ragbot import RagBot  # noqa: E402
from ragbot.answer.corrections import Correction, CorrectionMemory  # noqa: E402
from ragbot.evaluation.metrics import best_of, load_qa, rouge_l  # noqa: E402

CONVERSATIONS = {"follow-up": ["follow_ups_dev.jsonl", "follow_ups_same_sentence_dev.jsonl"],
                 "new subject": ["topic_changes_dev.jsonl", "off_topic_turns_dev.jsonl"]}
# What a user teaches for a question the documents do not answer ("Canberra"): a fact of their
# own, stood for here by a text no reference answer shares.
_OUTSIDE = "the user's own answer to "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=None, help="data dir to use (default: a new temporary one)")
    parser.add_argument("--judge", type=float, default=0.5, help="ROUGE-L between references that counts as the same answer")
    args = parser.parse_args()

    bot = RagBot.open(args.work or tempfile.mkdtemp(prefix="ragbot-turns-"))
    bot.ensure_default_corpus()
    threshold = bot.settings.correction_match

    corrections, kinds = [], []
    conversation_rows = []
    for kind, names in CONVERSATIONS.items():
        for name in names:
            for row in load_qa(ROOT / "bench" / "data" / name):
                conversation_rows.append(row)
                query = bot.standalone_query([row["previous"]], row["question"])
                if query == row["question"]:
                    continue  # searched alone: stored as a first question's correction, unchanged
                corrections.append(Correction(answer_id=f"c{len(corrections)}", question=query, answer="",
                                              correction=(row.get("answers") or [_OUTSIDE + row["question"]])[0], at=float(len(corrections)),
                                              turn=row["question"]))
                kinds.append(kind)
    memory = CorrectionMemory.build(corrections, bot.embedder, threshold)
    print(f"{len(memory)} turns searched joined (of {len(conversation_rows)}): "
          f"{kinds.count('follow-up')} follow-ups, {kinds.count('new subject')} new subjects; threshold {threshold}")

    first = {}
    for path in sorted((ROOT / "tests" / "data").glob("corpus_qa*.jsonl")):
        for row in load_qa(path):
            first.setdefault(row["question"], row.get("answers") or [])
    for row in conversation_rows:
        first.setdefault(row["previous"], [])  # references unknown: judged only by exact repeats
        first.setdefault(row["question"], row.get("answers") or [])
    questions = list(first)
    vectors = bot.embedder.encode(questions)

    def matched(vector, rule: str):
        if rule == "both":
            found = memory.match(vector)
            return found.correction if found is not None else None
        # the turn's words alone
        similarity = memory.turn_vectors @ vector
        best = int(similarity.argmax())
        return memory.corrections[best] if similarity[best] >= threshold else None

    report = {"machine": machine(), "threshold": threshold, "corrections": len(memory),
              "follow_up_corrections": kinds.count("follow-up"), "new_subject_corrections": kinds.count("new subject"),
              "first_questions": len(questions), "rules": {}}
    kind_by_id = {c.answer_id: k for c, k in zip(corrections, kinds)}
    kind_of = {c.turn: kind_by_id[c.answer_id] for c in memory.corrections}
    for rule in ("both", "turn alone"):
        repeats = {"follow-up": [], "new subject": []}
        wrong, judged = [], 0
        for question, vector in zip(questions, vectors):
            found = matched(vector, rule)
            if question in kind_of:
                repeats[kind_of[question]].append(found is not None and found.turn == question)
                continue
            if not first[question]:
                continue  # no references to judge a take-over by
            judged += 1
            wrong.append(found is not None and best_of(rouge_l, found.correction, first[question]) < args.judge)
        report["rules"][rule] = {"repeats_found_new_subject": share(repeats["new subject"]),
                                 "repeats_found_follow_up": share(repeats["follow-up"]),
                                 "wrong_take_overs": share(wrong)}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "turn_corrections.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report["rules"], indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
