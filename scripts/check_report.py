#!/usr/bin/env python3
"""Parses a dialogym HTML report with Python's html.parser and prints its structure as
JSON: per <section id>, its heading, plots (<svg> inside <figure class="plot ...">), tables
and side-by-side transcript pairs; every table row of the agents section; and anything
that would load from elsewhere (script, link, iframe, img/src, url(...)). tests/report.rs
checks the structure."""
import json
import sys
from html.parser import HTMLParser


class Report(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections = {}
        self.section = None
        self.stack = []
        self.external = []
        self.agent_rows = []
        self.row = None
        self.cell = None
        self.in_h2 = False
        self.pair_depth = None
        self.in_style = False
        self.errors = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in ("br", "meta", "img", "link", "input", "hr"):
            self.stack.append(tag)
        if tag in ("script", "link", "iframe", "object", "embed"):
            self.external.append(tag)
        for k in ("src", "href", "xlink:href"):
            v = a.get(k)
            if v and not v.startswith("#"):
                self.external.append(f"{tag} {k}={v}")
        if tag == "style":
            self.in_style = True
        if tag == "section":
            self.section = a.get("id")
            self.sections[self.section] = {"h2": "", "plots": [], "tables": 0, "pairs": [], "rows": 0}
        s = self.sections.get(self.section)
        if s is None:
            return
        if tag == "h2":
            self.in_h2 = True
        if tag == "figure" and "plot" in (a.get("class") or "").split():
            s["plots"].append({"class": a.get("class"), "svg": 0, "paths": 0, "texts": 0})
        if tag == "svg" and s["plots"]:
            s["plots"][-1]["svg"] += 1
        if tag in ("path", "polyline", "line", "rect") and s["plots"]:
            s["plots"][-1]["paths"] += 1
        if tag == "text" and s["plots"]:
            s["plots"][-1]["texts"] += 1
        if tag == "table":
            s["tables"] += 1
            if self.pair_depth is not None:
                s["pairs"][-1].append(0)
        if tag == "div" and "pair" in (a.get("class") or "").split():
            s["pairs"].append([])
            self.pair_depth = len(self.stack)
        if tag == "tr":
            s["rows"] += 1
            if self.pair_depth is not None and s["pairs"] and s["pairs"][-1]:
                s["pairs"][-1][-1] += 1
            if self.section == "agents":
                self.row = []
        if tag in ("td", "th") and self.row is not None:
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "style":
            self.in_style = False
        if tag == "h2":
            self.in_h2 = False
        if tag in ("td", "th") and self.row is not None and self.cell is not None:
            self.row.append(self.cell.strip())
            self.cell = None
        if tag == "tr" and self.row is not None:
            self.agent_rows.append(self.row)
            self.row = None
        if tag == "div" and self.pair_depth is not None and len(self.stack) == self.pair_depth:
            self.pair_depth = None
        if tag == "section":
            self.section = None
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        elif tag in self.stack:
            self.errors.append(f"</{tag}> closes over {self.stack[self.stack.index(tag) + 1:]}")
            while self.stack.pop() != tag:
                pass
        else:
            self.errors.append(f"stray </{tag}>")

    def handle_data(self, data):
        if self.in_style and "url(" in data:
            self.external.append("css url()")
        if self.in_h2 and self.section in self.sections:
            self.sections[self.section]["h2"] += data
        if self.cell is not None:
            self.cell += data


p = Report()
p.feed(open(sys.argv[1], encoding="utf-8").read())
p.close()
print(json.dumps({"sections": p.sections, "external": p.external, "agent_rows": p.agent_rows,
                  "order": list(p.sections), "errors": p.errors, "unclosed": p.stack}))
