"""Texts and charts as the review pages draw them: markdown rendered safely, message lists
as turns, and histograms as inline SVG (the pages' CSP allows no script, and SVG markup
needs none).

Safety is two layers: markdown-it renders with raw HTML off (a ``<script>`` in a row is
shown as text) and validates link targets, then nh3 (the Ammonia sanitiser) keeps only an
allow-list of tags and the http/https/mailto URL schemes. A row's text never reaches the
page unescaped."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

#: what rendered markdown may contain (no images: a row must not make the browser fetch)
TAGS = {"p", "br", "hr", "em", "strong", "del", "code", "pre", "blockquote", "ul", "ol",
        "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th",
        "td", "a"}
ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"style"}, "td": {"style"}}


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


def markdown(text: str) -> Markup:
    """``text`` as sanitised HTML."""
    html = _parser().render(text)
    return Markup(nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES,
                            url_schemes={"http", "https", "mailto"},
                            link_rel="noopener noreferrer nofollow"))


def _cut(text: str, limit: int | None) -> tuple[str, bool]:
    if limit is None or len(text) <= limit:
        return text, False
    return text[:limit], True


def text_html(value: Any, limit: int | None = None) -> Markup:
    """A prompt or an answer: a string as markdown, a message list as one block per turn
    (its role above its content); each content cut to ``limit`` characters, marked."""
    if value is None:
        return Markup('<span class="muted">—</span>')
    if isinstance(value, list):
        parts = []
        for m in value:
            role = str(m.get("role", "?")) if isinstance(m, dict) else "?"
            content = m.get("content", "") if isinstance(m, dict) else m
            parts.append(Markup('<div class="turn turn-{}"><div class="role">{}</div>{}</div>')
                         .format(_role_class(role), role, _block(str(content), limit)))
        return Markup("").join(parts)
    return _block(str(value), limit)


def _block(text: str, limit: int | None) -> Markup:
    text, cut = _cut(text, limit)
    html = markdown(text)
    return html + Markup('<span class="cut">…</span>') if cut else html


def _role_class(role: str) -> str:
    return role if role in ("system", "user", "assistant", "tool") else "other"


def histogram_svg(edges: list[float], series: list[tuple[str, list[int]]], *,
                  cut: float | None = None, title: str = "", width: int = 360,
                  height: int = 110, log_x: bool = False) -> Markup:
    """Bars over ``edges``; ``series`` (css class, counts) are stacked; ``cut`` draws a
    vertical line at that value (the budget's score threshold). ``log_x``: the edges are
    powers of two, drawn evenly spaced."""
    if not edges or len(edges) < 2:
        return Markup("")
    n = len(edges) - 1
    totals = [sum(s[1][i] for s in series) for i in range(n)]
    top = max(totals) or 1
    pad_b, pad_t = 18, 4
    plot_h = height - pad_b - pad_t
    bar_w = width / n
    out = [Markup('<svg class="hist" viewBox="0 0 {} {}" width="{}" height="{}" role="img" '
                  'aria-label="{}">').format(width, height, width, height, title)]
    if title:
        out.append(Markup("<title>{}</title>").format(title))
    for i in range(n):
        y = pad_t + plot_h
        for css, counts in series:
            h = plot_h * counts[i] / top
            if h > 0:
                y -= h
                out.append(Markup('<rect class="{}" x="{:.1f}" y="{:.1f}" width="{:.1f}" '
                                  'height="{:.1f}"><title>{} – {}: {:,}</title></rect>')
                           .format(css, i * bar_w + 0.5, y, max(bar_w - 1, 0.5), h,
                                   _num(edges[i]), _num(edges[i + 1]), counts[i]))
    if cut is not None and edges[0] <= cut <= edges[-1]:
        x = _x(cut, edges, width, log_x)
        out.append(Markup('<line class="cut" x1="{:.1f}" x2="{:.1f}" y1="0" y2="{}">'
                          '<title>cut: {}</title></line>')
                   .format(x, x, pad_t + plot_h, _num(cut)))
    for i in (0, n):
        anchor = "start" if i == 0 else "end"
        out.append(Markup('<text x="{:.1f}" y="{}" text-anchor="{}">{}</text>')
                   .format(i * bar_w, height - 4, anchor, _num(edges[i])))
    out.append(Markup("</svg>"))
    return Markup("").join(out)


def _x(value: float, edges: list[float], width: int, log_x: bool) -> float:
    if not log_x:
        span = (edges[-1] - edges[0]) or 1.0
        return width * (value - edges[0]) / span
    # evenly spaced bins: find the bin, then interpolate inside it
    for i in range(len(edges) - 1):
        if edges[i] <= value <= edges[i + 1]:
            inside = (value - edges[i]) / ((edges[i + 1] - edges[i]) or 1.0)
            return width * (i + inside) / (len(edges) - 1)
    return float(width)


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:.3g}"


