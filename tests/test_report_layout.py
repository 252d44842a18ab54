"""report.html laid out by headless Chromium (issue 15, finding 8), on a realistic ledger:
30 days, 10k calls, per-user budgets, rule savings. What a machine can check of what a
person saw: no two pieces of text overlap, every budget row names its scope value, a short
ledger is not drawn as one bar at the edge of a month, small cards keep their own height."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from tests.report_ledger import build
from tests.test_server_dashboard import chromium, run_chromium
from unillm import Client
from unillm.server.report import render_report, write_report

# Appended to a copy of the report (the report itself has no script): every visible text
# box, clipped by its overflow-hidden ancestors, and each pair of them that overlaps.
PROBE = """<script>
(() => {
  const boxes = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.textContent.trim() || n.parentElement.closest('title,style,script')) continue;
    const range = document.createRange(); range.selectNodeContents(n);
    let r = range.getBoundingClientRect();
    let box = {l: r.left, t: r.top, r: r.right, b: r.bottom};
    for (let e = n.parentElement; e; e = e.parentElement) {
      if (e instanceof HTMLElement && getComputedStyle(e).overflowX !== 'visible') {
        const c = e.getBoundingClientRect();
        box = {l: Math.max(box.l, c.left), t: Math.max(box.t, c.top), r: Math.min(box.r, c.right), b: Math.min(box.b, c.bottom)};
      }
    }
    if (box.r - box.l > 0.5 && box.b - box.t > 0.5) boxes.push({...box, text: n.textContent.trim()});
  }
  const overlaps = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i], b = boxes[j];
    const w = Math.min(a.r, b.r) - Math.max(a.l, b.l), h = Math.min(a.b, b.b) - Math.max(a.t, b.t);
    if (w > 1 && h > 1) overlaps.push([a.text, b.text, Math.round(w), Math.round(h)]);
  }
  const cards = {};
  for (const s of document.querySelectorAll('section.card')) {
    const h = s.querySelector('h2'); if (!h) continue;
    const content = [...s.children].reduce((m, c) => Math.max(m, c.getBoundingClientRect().bottom), 0);
    cards[h.textContent] = {height: s.getBoundingClientRect().height, slack: s.getBoundingClientRect().bottom - content};
  }
  const pre = document.createElement('pre'); pre.id = 'layout';
  pre.textContent = JSON.stringify({boxes: boxes.length, overlaps, cards});
  document.body.appendChild(pre);
})();
</script>"""


def layout(report: Path, tmp: Path) -> dict:
    probe = tmp / "probe.html"
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = run_chromium(probe.as_uri(), tmp, "--dump-dom", "--window-size=1400,2000").stdout
    found = re.search(r"<pre id=\"layout\">(.*?)</pre>", dom, re.DOTALL)
    assert found, dom[-2000:]
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose ledger holds 30 days and 10k calls."""
    return build(tmp_path_factory.mktemp("month") / "project", rows=10_000, days=30)


def test_a_month_of_calls_lays_out_without_overlapping_text(month: Path, tmp_path: Path) -> None:
    chromium()
    report = write_report(Client.from_config(month), tmp_path / "report.html", since="30d")
    seen = layout(report, tmp_path)
    assert seen["boxes"] > 300  # the probe saw the page's text
    assert seen["overlaps"] == []
    # the small cards of the bottom row keep their own height beside a long Budgets card
    cards = seen["cards"]
    assert cards["Budgets"]["height"] > cards["Cache"]["height"] + 100
    for small in ("Cache", "Rule savings"):
        assert cards[small]["slack"] < 30, (small, cards[small])


def test_every_budget_row_names_its_scope_value(month: Path) -> None:
    client = Client.from_config(month)
    page = render_report(client, since="30d")
    rows = [html.unescape(re.sub(r"<[^>]+>", "", m))
            for m in re.findall(r"<span class='label'[^>]*>(.*?)</span></span>", page)]
    status = [r for r in client.budgets.status() if r.get("limit_usd") is not None]
    assert len(rows) == len(status) == 6 + 2
    for r in status:
        scope = r["scope"]
        label = " · ".join([*map(str, scope.values()), r["period"]])
        assert f"{r['budget']} · {label}" in rows, (r, rows)
    assert any(row.startswith("per user monthly · ann · ") for row in rows)


def test_a_day_of_calls_is_drawn_per_hour_from_its_first_call(tmp_path: Path) -> None:
    cfg = build(tmp_path / "project", rows=0)  # only today's real calls
    page = render_report(Client.from_config(cfg), since="30d")
    assert "Spend over time, per hour" in page
    chart = page[page.index("aria-label='spend over time'"):]
    chart = chart[:chart.index("</svg>")]
    values = re.findall(r"class='bar'[^>]*data-value='([^']+)'", chart)
    assert values and values[0] != "0", values[:3]  # no empty month before the first call
    assert "<polygon" not in chart  # no area shape drawn behind a lone column


def test_many_budgets_show_the_fullest_and_say_how_many_more() -> None:
    from decimal import Decimal

    from unillm.server.dashboard import _budgets
    rows = [{"budget": "per user", "scope": {"user": f"u{i}"}, "period": "2026-12",
             "limit_usd": Decimal(10), "spent_usd": Decimal(i)} for i in range(20)]
    out = _budgets(rows)
    assert out.count("class='budget'") == 12 and "8 more (least used) not shown" in out
    assert "· u19 ·" in out and "· u8 ·" in out and "· u7 ·" not in out


def test_an_empty_range_says_so_instead_of_drawing_empty_columns(tmp_path: Path) -> None:
    client = Client(ledger=f"sqlite:///{tmp_path.as_posix().lstrip('/')}/empty.db", cache="off")
    page = render_report(client, since="30d")
    chart = page[page.index("aria-label='spend over time'"):]
    chart = chart[:chart.index("</svg>")]
    assert "No calls in this range" in chart and "class='bar'" not in chart
    client.close()
