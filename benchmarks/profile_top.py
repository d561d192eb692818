"""Summarise a py-spy collapsed-stack file (``py-spy record -f raw``) as its top frames.

    python benchmarks/profile_top.py PROFILE.raw [--top 15]

Prints the frames with the largest share of samples, both *self* (the frame was on top of the stack:
where the CPU actually went) and *inclusive* (the frame was anywhere on the stack), so a profile can be
kept in reports/ as text beside the figures it explains.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

__all__ = ["summarise"]

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME_LINE = re.compile(r":\d+\)$")


def _frame(raw: str) -> str:
    """``func (path/to/file.py:123)`` without the line number, with the path shortened."""
    name = _FRAME_LINE.sub(")", raw)
    for marker in ("site-packages/", "/lib/python3"):
        if marker in name:
            head, _, tail = name.partition("(")
            name = head + "(" + tail.split(marker, 1)[-1]
    return name


def summarise(text: str, top: int = 15) -> str:
    self_count: collections.Counter[str] = collections.Counter()
    incl_count: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        count = int(m["count"])
        frames = [_frame(f) for f in m["stack"].split(";") if f]
        if not frames:
            continue
        total += count
        self_count[frames[-1]] += count
        for f in set(frames):
            incl_count[f] += count
    out = [f"samples: {total}", "", f"top {top} self (where the CPU went):"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in self_count.most_common(top)]
    out += ["", f"top {top} inclusive:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in incl_count.most_common(top)]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    print(summarise(args.profile.read_text(), args.top))


if __name__ == "__main__":
    main()
