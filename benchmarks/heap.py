"""Heap benchmark: how long a full garbage collection stops ranker's event loop, before and after
start-up's objects are frozen (``ranker.runtime.process.settle_heap``).

    .venv/bin/python -m benchmarks.heap [--collections 20]

Builds what ``ranker serve`` builds before it serves (every module imported, the app created,
nothing connected: ``create_app`` does no I/O), then times ``gc.collect()``, which is what
CPython runs once or twice a second under ingest (a generation-2 collection), first as is, then
after ``settle_heap``. Medians and the worst of ``--collections`` each; the ratio is the pause
saved. No Redis is needed; the report names the one in ``--redis-url`` only as every report does.
"""

from __future__ import annotations

import argparse
import gc
import time

from benchmarks import harness
from benchmarks.report import Report, median, ratio
from ranker.app import create_app
from ranker.config import Settings
from ranker.runtime.process import settle_heap

MODULE = "benchmarks.heap"


def pauses(collections: int) -> list[float]:
    """Seconds each full collection took."""
    taken = []
    for _ in range(collections):
        started = time.perf_counter()
        gc.collect()
        taken.append(time.perf_counter() - started)
    return taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=harness.DEFAULT_REDIS_URL)
    parser.add_argument("--collections", type=int, default=20)
    args = parser.parse_args()
    app = create_app(Settings(redis_url=args.redis_url))
    tracked = len(gc.get_objects())
    before = pauses(args.collections)
    settle_heap()
    after = pauses(args.collections)
    frozen = gc.get_freeze_count()
    gc.unfreeze()
    del app
    report = Report("Heap benchmark", MODULE, args.redis_url)
    report.add(
        f"A process with every ranker module imported and the app created ({tracked:,} objects "
        f"tracked by the collector); {args.collections} full collections (`gc.collect()`) "
        f"each way. `settle_heap` froze {frozen:,} objects."
    )
    rows = [
        [name, f"{median(times) * 1e6:,.0f}", f"{max(times) * 1e6:,.0f}"]
        for name, times in (("as start-up left it", before), ("after settle_heap", after))
    ]
    report.table(["full collection", "median µs", "worst µs"], rows)
    report.add(f"pause as is / after settle_heap (medians): {ratio(median(before), median(after))}")
    report.print()


if __name__ == "__main__":
    main()
