"""The Markdown report every benchmark prints, and the statistics it quotes."""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from importlib.metadata import version
from pathlib import Path

from benchmarks.harness import redis_info


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: always one of the measured values, never an interpolation."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least 1
    return ordered[int(rank) - 1]


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


class Report:
    """Markdown, built up as the benchmark goes and printed to stdout at the end."""

    def __init__(self, title: str, module: str, redis_url: str) -> None:
        info = redis_info(redis_url)
        wrk_version = "not installed"
        if shutil.which("wrk") is not None:
            wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
            wrk_version = (wrk.stdout + wrk.stderr).split("\n")[0].split(" Copyright")[0]
        cpu = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
        python = os.path.relpath(sys.executable)
        python = sys.executable if python.startswith("..") else python
        command = shlex.join([python, "-m", module, *sys.argv[1:]])
        self.lines = [f"# {title}", "", "```sh", command, "```", ""]
        self.table(
            ["machine", ""],
            [
                ["nproc", str(len(os.sched_getaffinity(0)))],
                ["CPU", cpu[1] if cpu else "unknown"],
                ["kernel", platform.release()],
                ["Python", platform.python_version()],
                ["aiohttp", version("aiohttp")],
                ["redis-py", version("redis")],
                ["Redis server", f"{info.get('redis_version')} at {redis_url}"],
                ["wrk", wrk_version],
                ["date", time.strftime("%Y-%m-%d %H:%M:%S %z")],
                # The machine is shared: a high load before the start explains outliers.
                ["load average", " ".join(f"{x:.2f}" for x in os.getloadavg())],
            ],
        )

    def add(self, *paragraphs: str) -> None:
        for paragraph in paragraphs:
            self.lines += [paragraph, ""]

    def table(self, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
        self.lines.append("| " + " | ".join(header) + " |")
        self.lines.append("|" + "---|" * len(header))
        self.lines += ["| " + " | ".join(row) + " |" for row in rows]
        self.lines.append("")

    def print(self) -> None:
        print("\n".join(self.lines))
