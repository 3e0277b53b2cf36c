import json
import subprocess
import sys

import pytest

from ragbot.errors import RagbotError
from ragbot.evaluation.report import write_report

from conftest import ROOT


def _run(folder, rouge, refused_unanswerable):
    folder.mkdir(parents=True)
    records = [
        {"question": f"q{i}", "answerable": True, "category": "basics" if i % 2 else "risks",
         "answer": "a", "refused": False, "refusal_reason": None, "latency_ms": 1000 + 100 * i,
         "answer_words": 10, "rougeL": rouge, "token_f1": rouge, "citation_accuracy": 1.0, "groundedness": 0.5}
        for i in range(6)
    ] + [
        {"question": "u", "answerable": False, "category": "unanswerable", "answer": "I don't know",
         "refused": refused_unanswerable, "refusal_reason": None, "latency_ms": 50, "answer_words": 3,
         "rougeL": None, "token_f1": None, "citation_accuracy": None, "groundedness": None}
    ]
    summary = {"n": 7, "rougeL": rouge, "refusal_rate_unanswerable": float(refused_unanswerable), "model": "m"}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "per_question.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_report_with_plots_and_side_by_side_comparison(tmp_path):
    base = _run(tmp_path / "base", 0.2, False)
    cand = _run(tmp_path / "cand", 0.35, True)
    report = write_report(tmp_path / "report", cand, base)
    text = report.read_text()
    assert "| rougeL | 0.200 | 0.350 | +0.150 |" in text
    assert "| refusal_rate_unanswerable | 0.000 | 1.000 | +1.000 |" in text
    for png in ("scores.png", "categories.png", "latency.png"):
        data = (tmp_path / "report" / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
        assert f"]({png})" in text


def test_report_command_and_errors(tmp_path):
    run = _run(tmp_path / "run", 0.3, True)
    result = subprocess.run([sys.executable, "-m", "ragbot", "eval", "report", str(run), "--out", str(tmp_path / "r")],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r" / "report.md").is_file()
    with pytest.raises(RagbotError, match="no summary.json"):
        write_report(tmp_path / "x", tmp_path)
