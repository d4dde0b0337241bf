"""How a command shows its progress: a live line (rich) on a terminal, a plain line every few
seconds otherwise (a log, a CI job), and a summary at the end."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live
from rich.text import Text

PLAIN_EVERY_S = 5.0


@dataclass
class Tally:
    """Views sent and what ranker made of them."""

    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    excluded: int = 0
    batches: int = 0
    started: float = 0.0

    def line(self, now: float, extra: str = "") -> str:
        elapsed = max(now - self.started, 1e-9)
        return (
            f"sent {self.sent:,}  accepted {self.accepted:,}  excluded {self.excluded:,}  "
            f"rejected {self.rejected:,}  {self.sent / elapsed:,.0f} views/s{extra}"
        )


class Reporter:
    """Shows a :class:`Tally` as it grows: live on a terminal, else every ``PLAIN_EVERY_S``."""

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic) -> None:
        self._console = console
        self._clock = clock
        self._live: Live | None = None
        if console.is_terminal:
            self._live = Live(Text(""), console=console, refresh_per_second=4, transient=True)
            self._live.start()
        self._printed_at = clock()

    def update(self, tally: Tally, extra: str = "") -> None:
        now = self._clock()
        if self._live is not None:
            self._live.update(Text(tally.line(now, extra)))
        elif now - self._printed_at >= PLAIN_EVERY_S:
            self._printed_at = now
            self._console.print(tally.line(now, extra), highlight=False)

    def close(self, tally: Tally, what: str) -> None:
        """Stop the live line and print the summary."""
        if self._live is not None:
            self._live.stop()
        self._console.print(f"{what}: {tally.line(self._clock())}", highlight=False)
