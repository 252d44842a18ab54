"""The dashboard shows the section tree: every section with its subtree's calls and cost,
children indented under their parents (checked in headless Chromium)."""

from __future__ import annotations

import re
from decimal import Decimal

import httpx

from tests.test_server_dashboard import chromium, run_chromium
from tests.test_server_support import served, upstream  # noqa: F401
from unillm.server.svg import usd

SECTIONS = [("agent:research", 1_000_000), ("agent:research/llm:query", 2_000_000),
            ("agent:research/tool:search", 4_000_000), ("agent:write", 8_000_000)]


def test_the_section_tree_is_drawn_with_rolled_up_costs(served, tmp_path):
    chromium()
    items = [{"provider": "openai", "model": "gpt-4o-mini", "input_tokens": n, "output_tokens": 0,
              "section": section} for section, n in SECTIONS]
    r = httpx.post(served.url + "/v1/usage/batch", json={"records": items},
                   headers={"authorization": f"Bearer {served.admin}"})
    assert r.status_code == 201, r.text
    dom = run_chromium(f"{served.url}/dashboard?key={served.admin}", tmp_path, "--dump-dom").stdout
    rows = re.findall(r"<tr class=\"section\"><td class=\"d(\d)\" title=\"([^\"]+)\">[^<]*</td>"
                      r"<td class=\"num\">(\d+)</td><td class=\"num\">[^<]*</td><td class=\"num\">([^<]+)</td>", dom)
    assert [(int(d), path, int(calls)) for d, path, calls, _ in rows] == [
        (0, "agent:research", 3), (1, "agent:research/llm:query", 1), (1, "agent:research/tool:search", 1),
        (0, "agent:write", 1)]
    research = Decimal("0.15") * 7  # $0.15 per 1M input tokens, 7M tokens in the subtree
    assert rows[0][3] == usd(research)
