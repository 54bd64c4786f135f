"""Reads a QC page (`segtool.qc`) back: its case rows, pictures, scripts and body attributes."""

from __future__ import annotations

import html.parser


class QcPage(html.parser.HTMLParser):
    """Collects case rows (data-case), images (their attributes), <script> count and <body>'s attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.cases: list[str] = []
        self.images: list[dict] = []
        self.scripts = 0
        self.body: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "case" in (attrs.get("class") or "").split():
            self.cases.append(attrs["data-case"])
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "script":
            self.scripts += 1
        elif tag == "body":
            self.body = attrs


def parse(text: str) -> QcPage:
    page = QcPage()
    page.feed(text)
    return page
