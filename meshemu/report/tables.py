"""Plain-text tables in the style of `calicoctl node status` (pure)."""

from __future__ import annotations


def table(rows: list[list[str]], headers: list[str]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [
        rule,
        "| " + " | ".join(h.center(w) for h, w in zip(headers, widths, strict=True)) + " |",
        rule,
    ]
    out += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    out.append(rule)
    return out
