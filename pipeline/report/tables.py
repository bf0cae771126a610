"""HTML table cells and tables: the one place the report formats a value."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from typing import Any

NUMERIC = re.compile(r"-?[0-9][0-9.,]*( %| dB| of [0-9]+)?")


def fmt(v: Any, digits: int = 4) -> str:
    """A cell's text: floats with ``digits`` decimals (scientific from 1e5), the rest escaped."""
    if isinstance(v, float):
        if math.isinf(v) or math.isnan(v):
            return str(v)
        return f"{v:.{digits}f}" if abs(v) < 1e5 else f"{v:.3e}"
    return html.escape(str(v))


def _cell(v: Any) -> str:
    """Numbers (and text that starts with one) right-aligned, other text left-aligned."""
    text = fmt(v)
    numeric = isinstance(v, int | float) or NUMERIC.fullmatch(text) is not None
    return f'<td class="n">{text}</td>' if numeric else f"<td>{text}</td>"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """One ``<table>``: escaped headers, every cell through :func:`fmt`."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
