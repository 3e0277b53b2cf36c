"""Do corrections reach the questions they should, and only those? The frozen set's totals.

tests/data/frozen/corrections.jsonl (held out: read only its totals, never its rows) holds
corrected turns (a conversation's first question, a follow-up, or a new subject asked after
another question) with probes: questions a user would expect to get the correction (the same
words again, in or out of their conversation, a paraphrase) or not (another question on the
same document or another, the question before a follow-up).

On a fresh data dir with the shipped corpus, each row is asked as the chat asks it (a turn after
`previous` is searched as `RagBot.standalone_query` decides), corrected with a thumbs-down and
its `correction`, and its probes are asked in new conversations; then the correction is taken
back, so rows do not meet. A probe "gets the correction" when its answer is that correction
(`Answer.correction_of`): what the user sees, judged against the set's written expectations,
not against the matching threshold. Reported with bootstrap 95% intervals: the share of probes
expecting the correction that got it (reached), and of probes expecting none that got it
(taken over), in total, by probe kind and by setting.

    python bench/bench_corrections.py [--work DIR] [--set ROWS]
    PYTHONPATH=<a checkout> python bench/bench_corrections.py   # the ragbot of another commit
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, machine, share, table  # noqa: E402

import ragbot  # noqa: E402
from ragbot import RagBot  # noqa: E402

FROZEN = ROOT / "tests" / "data" / "frozen" / "corrections.jsonl"


def asked(bot, question: str, previous: str | None, record: bool):
    """`question` as the chat asks it: first in a new conversation, or after `previous`."""
    conversation = uuid.uuid4().hex
    if not previous:
        return bot.ask(question, record=record, conversation_id=conversation, turn=1)
    bot.ask(previous, record=False, conversation_id=conversation, turn=1)
    query = bot.standalone_query([previous], question)
    return bot.ask(question, record=record, retrieval_query=query, conversation_id=conversation, turn=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=None, help="data dir to use (default: a new temporary one)")
    parser.add_argument("--set", default=str(FROZEN), help="rows to use (default: the frozen set)")
    args = parser.parse_args()
    started = time.time()
    rows = [json.loads(line) for line in Path(args.set).read_text(encoding="utf-8").splitlines() if line.strip()]
    bot = RagBot.open(args.work or tempfile.mkdtemp(prefix="ragbot-corrections-"))
    bot.ensure_default_corpus()
    print(f"ragbot from {Path(ragbot.__file__).parent}; {len(rows)} corrected turns")

    got: dict[tuple[str, str], list[bool]] = defaultdict(list)  # (expectation, group) -> got the correction
    for row in rows:
        corrected = asked(bot, row["question"], row.get("previous"), record=True)
        bot.feedback.set_feedback(corrected.id, -1, correction=row["correction"])
        try:
            for probe in row["probes"]:
                answer = asked(bot, probe["question"], probe.get("previous"), record=False)
                hit = answer.correction_of == corrected.id
                for group in ("all", f"kind {probe['kind']}", f"setting {row['setting']}"):
                    got[(probe["expect"], group)].append(hit)
        finally:
            bot.feedback.set_feedback(corrected.id, None)

    report = {"machine": machine(), "ragbot": str(Path(ragbot.__file__).parent), "rows": len(rows),
              "reached": {group: share(flags) for (expect, group), flags in sorted(got.items())
                          if expect == "correction"},
              "taken_over": {group: share(flags) for (expect, group), flags in sorted(got.items())
                             if expect == "not"},
              "seconds": round(time.time() - started, 1)}
    lines = []
    for measure in ("reached", "taken_over"):
        for group, result in report[measure].items():
            interval = result["ci95"]
            lines.append({"measure": measure, "probes": group, "n": result["n"], "share": f"{result['share']:.3f}",
                          "95% interval": f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "-"})
    print(json.dumps(report["machine"]))
    print(table(lines))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "corrections_frozen.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"written to {out} in {report['seconds']} s")


if __name__ == "__main__":
    main()
