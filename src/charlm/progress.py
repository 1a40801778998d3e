"""Progress of long work: a tqdm bar on a terminal; elsewhere (a log file, a pipe, CI) a plain line every half minute.

The caller asks :meth:`Progress.due` before it computes what to show (the training loss is
read back from the device for it), then calls :meth:`Progress.show` with the count so far.
"""

from __future__ import annotations

import re
import sys
import time

BAR_EVERY_S = 0.5  # seconds between updates of a bar
PLAIN_EVERY_S = 30.0  # seconds between plain lines


def is_tty(stream) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


class Progress:
    """``total`` things (``unit``, e.g. "batch") to do, ``initial`` of them done already."""

    def __init__(self, total: int, desc: str, unit: str, initial: int = 0, file=None):
        self.file = file if file is not None else sys.stderr
        self.total, self.desc, self.unit = total, desc, unit
        self.bar = None
        if is_tty(self.file):
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False, dynamic_ncols=True, file=self.file)
        self.every = BAR_EVERY_S if self.bar is not None else PLAIN_EVERY_S
        self.last = time.perf_counter()

    def due(self, final: bool = False) -> bool:
        """Whether :meth:`show` would show something now; ``final``: the work is done (a bar shows it, plain lines do not)."""
        return (final and self.bar is not None) or time.perf_counter() - self.last >= self.every

    def show(self, n: int, **postfix: str) -> None:
        """``n`` done; ``postfix`` (name: text) after the count, e.g. loss="1.234"."""
        self.last = time.perf_counter()
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(n - self.bar.n)
            return
        unit = self.unit if self.total == 1 else self.unit + ("es" if self.unit.endswith("ch") else "s")
        share = f" ({n / self.total:.0%})" if self.total else ""
        extra = "".join(f", {k.replace('_', '/')} {v}" for k, v in postfix.items())
        print(f"{self.desc}: {n:,} of {self.total:,} {unit}{share}{extra}", file=self.file, flush=True)

    def advance(self, n: int) -> None:
        """``n`` done: shown when due (a callback for work that reports its count, like :func:`charlm.train.evaluate`)."""
        if self.due(final=n >= self.total):
            self.show(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


_UNSHOWN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def one_line(text: str, newline: str = " / ") -> str:
    """``text`` as one line of a terminal's report (a training's sample, eval's rows, a copied span): line breaks as
    ``newline``, and what a terminal would act on rather than show as its code point, ⟨001B⟩: control characters
    (an escape sequence sets the window's title or clears the screen), the line and paragraph separators, and the
    marks that turn the direction of the text after them.  A tab stays a tab."""
    return _UNSHOWN.sub(lambda m: f"⟨{ord(m.group()):04X}⟩", text.replace("\n", newline))
