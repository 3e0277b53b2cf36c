"""Many chat sessions at once against a running `ragbot chat`, through gradio_client.

For each configuration (answer mode x backend) a fresh `ragbot chat` serves a copy of one data
dir holding the shipped corpus, and:
- one at a time: the same N questions asked one after another (each waits for the previous
  answer), the baseline;
- concurrent: N sessions ask those questions at once, each then saves a comment on its answer;
- concurrent during an ingest: the same while `ragbot ingest ../shared/data/pdfs` (another
  process, the same data dir) runs, when that folder is present.
Throughput is answers per second of wall time; the ratio is concurrent / one at a time, in the
same run. Latency is per answer (question sent -> finished answer). Every comment is then
checked in the database (a lost vote counts). Peak RSS is the chat process's (VmHWM) at the end.

    python bench/bench_load.py [--sessions 20] [--modes extract,generate]
                               [--backends llama.cpp,transformers] [--parallel 4,8,16] [--no-ingest]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import ROOT, SHARED, machine, save, table


def questions(n: int) -> list[str]:
    """The first n questions of the development set (answerable and not, as it mixes them)."""
    rows = [json.loads(line) for line in (ROOT / "tests/data/corpus_qa.jsonl").read_text().splitlines() if line]
    return [r["question"] for r in rows[:n]]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Chat:
    """`ragbot chat` in its own process."""

    def __init__(self, data_dir: Path, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = open(data_dir.parent / f"chat-{self.port}.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "ragbot", "chat", "--data-dir", str(data_dir),
                                      "--port", str(self.port), *args], cwd=ROOT, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    sys.exit(f"ragbot chat did not start; see {self.log.name}")
                time.sleep(1)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()


def one_session(url: str, question: str, tag: str) -> dict:
    """Ask, then save a comment on the answer: the answer's id, latency and any error."""
    from gradio_client import Client

    try:
        client = Client(url, verbose=False)
        started = time.perf_counter()
        history, _sources, _box = client.predict(question, [], 5, 0.0, False, {}, api_name="/respond")
        latency = time.perf_counter() - started
        status, _, _ = client.predict(history, tag, "", None, api_name="/save")
        if status != "Saved with the chosen answer.":
            return {"error": f"save: {status}", "latency": latency}
        return {"id": history[-1]["metadata"]["id"], "comment": tag, "latency": latency}
    except Exception as exc:  # counted and shown, the run goes on
        return {"error": f"{type(exc).__name__}: {exc}"[:200], "latency": float("nan")}


def burst(url: str, asked: list[str], tag: str, concurrent: bool) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    jobs = [(url, q, f"{tag} {i}") for i, q in enumerate(asked)]
    if concurrent:
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            results = list(pool.map(lambda job: one_session(*job), jobs))
    else:
        results = [one_session(*job) for job in jobs]
    return time.perf_counter() - started, results


def lost_votes(data_dir: Path, results: list[dict]) -> int:
    from ragbot import RagBot

    bot = RagBot.open(data_dir)
    try:
        lost = 0
        for r in results:
            if "id" in r:
                saved = bot.feedback.feedback(r["id"])
                lost += saved is None or saved.comment != r["comment"]
        return lost
    finally:
        bot.close()


def row(name: str, seconds: float, results: list[dict], data_dir: Path, baseline: float | None) -> dict:
    latencies = sorted(r["latency"] for r in results if "error" not in r)
    throughput = len(latencies) / seconds
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))] if latencies else float("nan")
    return {
        "run": name, "answers": len(latencies), "errors": sum("error" in r for r in results),
        "lost_votes": lost_votes(data_dir, results), "wall_s": seconds, "answers_per_s": throughput,
        "vs_one_at_a_time": throughput / baseline if baseline else 1.0,
        "p50_s": statistics.median(latencies) if latencies else float("nan"), "p95_s": p95,
        "first_error": next((r["error"] for r in results if "error" in r), ""),
    }


def configuration(prepared: Path, mode: str, backend: str, asked: list[str], pdfs: Path | None,
                  parallel: int | None = None) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix=f"ragbot-load-{mode}-{backend}-"))
    data_dir = work / "data"
    shutil.copytree(prepared, data_dir)
    extra = ["--parallel-answers", str(parallel)] if parallel else []
    chat = Chat(data_dir, "--answer-mode", mode, "--backend", backend, "--no-default-corpus", *extra)
    label = f"{mode}, {backend}" + (f" x{parallel}" if parallel else "")
    rows = []
    try:
        one_session(chat.url, asked[0], "warm-up")  # loads the models
        seconds, results = burst(chat.url, asked, "sequential", concurrent=False)
        rows.append(row(f"{label}: one at a time", seconds, results, data_dir, None))
        baseline = rows[0]["answers_per_s"]
        seconds, results = burst(chat.url, asked, "concurrent", concurrent=True)
        rows.append(row(f"{label}: {len(asked)} at once", seconds, results, data_dir, baseline))
        if pdfs is not None:
            ingest = subprocess.Popen([sys.executable, "-m", "ragbot", "ingest", str(pdfs), "--data-dir",
                                       str(data_dir), "-q"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True)
            time.sleep(2)  # the ingest has started reading and embedding
            seconds, results = burst(chat.url, asked, "during ingest", concurrent=True)
            during = row(f"{label}: {len(asked)} at once, ingest running", seconds, results, data_dir, baseline)
            during["ingest_still_running"] = ingest.poll() is None
            _, err = ingest.communicate(timeout=1800)
            if ingest.returncode != 0:
                during["errors"] += 1
                print(f"the ingest failed: {err[-500:]}", file=sys.stderr)
            rows.append(during)
        for r in rows:
            r["chat_peak_rss_mb"] = chat.peak_rss_mb()
    finally:
        chat.stop()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--modes", default="extract,generate")
    parser.add_argument("--backends", default="llama.cpp,transformers",
                        help="backends for the generate mode (extract uses no generator: run once)")
    parser.add_argument("--parallel", default="",
                        help="comma-separated parallel_answers values for generate on llama.cpp (default: the setting)")
    parser.add_argument("--no-ingest", action="store_true", help="skip the runs during an ingest")
    args = parser.parse_args()
    print(json.dumps(machine()))
    asked = questions(args.sessions)
    pdfs = SHARED / "pdfs"
    pdfs = None if args.no_ingest or not pdfs.is_dir() else pdfs
    if pdfs is None and not args.no_ingest:
        print(f"{SHARED / 'pdfs'} not found: no runs during an ingest")

    from ragbot import RagBot

    prepared = Path(tempfile.mkdtemp(prefix="ragbot-load-corpus-")) / "data"
    bot = RagBot.open(prepared)
    try:
        bot.ingest([ROOT / "corpus"])
    finally:
        bot.close()
    rows = []
    for mode in args.modes.split(","):
        for backend in (["auto"] if mode == "extract" else args.backends.split(",")):
            widths = [int(p) for p in args.parallel.split(",") if p] if backend == "llama.cpp" else []
            for parallel in widths or [None]:
                rows += configuration(prepared, mode, backend, asked, pdfs, parallel)
                print(table(rows[-3:]), flush=True)
    print(table(rows))
    print(f"saved {save('load', {'sessions': args.sessions, 'rows': rows})}")
    shutil.rmtree(prepared.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
