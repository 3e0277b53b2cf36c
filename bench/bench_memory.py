"""Peak memory (RSS) of whole commands, each in its own process: ingest of the shipped corpus
into an empty data dir, one `ragbot ask` with both models loaded, and a short `ragbot tune`
(model-written questions, SFT and KTO steps, the gate with both models).

    python bench/bench_memory.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

from common import ROOT, save, table


def measure(args: list[str]) -> dict:
    """Run one command in a fresh child; report its wall time and peak RSS (via wait4)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ragbot", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os_wait4(proc.pid)
    stderr = proc.stderr.read()
    proc.stderr.close()
    if status != 0:
        sys.exit(f"ragbot {' '.join(args)} failed:\n{stderr}")
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": usage.ru_maxrss / 1024}


def os_wait4(pid: int):
    import os

    _, status, usage = os.wait4(pid, 0)
    return pid, os.waitstatus_to_exitcode(status), usage


def main() -> None:
    data_dir = tempfile.mkdtemp(prefix="ragbot-bench-mem-")
    rows = [
        {"command": "ingest corpus/", **measure(["ingest", str(ROOT / "corpus"), "--data-dir", data_dir, "-q"])},
        # The first ask converts the GGUF once; the second is a normal start.
        {"command": "ask (first run: converts the model)", **measure(["ask", "What is a GAN?", "--data-dir", data_dir])},
        {"command": "ask", **measure(["ask", "What is a GAN?", "--data-dir", data_dir])},
        {"command": "tune (4 steps per stage)", **measure(
            ["tune", "--data-dir", data_dir, "--max-steps", "4", "--model-questions", "4",
             "--preference", "kto", "--gate-questions", "4", "--activate", "never"])},
    ]
    print(table(rows))
    print(f"saved {save('memory', {'rows': rows})}")


if __name__ == "__main__":
    main()
