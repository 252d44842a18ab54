"""The dashboard's budget and rule pages in headless Chromium: the admin API's data is on the
page and visible, nothing runs or loads (no console message, no CSP violation), and strings
tenants and admins typed are escaped."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.test_server_dashboard import chromium, colour_pixels, read_png, run_chromium
from tests.test_server_support import Served, served, upstream  # noqa: F401 - fixtures
from unillm.server.dashboard import SECURITY_HEADERS

openai = pytest.importorskip("openai")
MSG = [{"role": "user", "content": "hi"}]
EVIL_USER = "<img src=x onerror=alert(1)>"        # a tenant's tag, shown as a budget scope
EVIL_NAME = "cap</td><script>alert(2)</script>"   # an admin-typed budget name
EVIL_WORD = "<b>urgent</b>&amp;"                  # a rule keyword


def _h(s: Served) -> dict[str, str]:
    return {"authorization": f"Bearer {s.admin}"}


def _post(s: Served, path: str, body: dict) -> None:
    r = httpx.post(s.url + path, headers=_h(s), json=body)
    assert r.status_code == 201, r.text


def seed(s: Served) -> None:
    """Two budgets (one per user, one named with markup), two rules, calls that use them."""
    _post(s, "/admin/budgets", {"name": "per-user", "scope": {"user": "*"}, "limit_usd": "5",
                                "period": "daily", "alert_at": [0.5, 0.8]})
    _post(s, "/admin/budgets", {"name": EVIL_NAME, "limit_requests": 100, "period": "weekly"})
    _post(s, "/admin/rules", {"name": "to-mini", "when": {"model": "gpt-4o"}, "use": "gpt-4o-mini",
                              "max_tokens": 300})
    _post(s, "/admin/rules", {"name": "hush", "when": {"keywords_any": [EVIL_WORD]}, "deny": "not today"})
    client = s.openai(s.key(user=EVIL_USER))
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o", messages=MSG)


def run(url: str, tmp: Path, *extra: str) -> tuple[str, list[str]]:
    """(stdout, the console messages Chromium logged: script output, CSP violations)."""
    out = run_chromium(url, tmp, "--enable-logging=stderr", "--v=0", *extra)
    return out.stdout, [line for line in out.stderr.splitlines() if ":CONSOLE" in line]


def test_the_console_check_sees_a_csp_violation(tmp_path):
    """The control: the check below would see a page that broke the policy."""
    chromium()
    page = tmp_path / "p.html"
    page.write_text(f"<!doctype html><meta http-equiv='Content-Security-Policy' "
                    f"content=\"{SECURITY_HEADERS['content-security-policy']}\"><p>x</p>"
                    "<script>console.log('ran')</script><img src='http://127.0.0.1:9/x.png'>")
    _, console = run(page.as_uri(), tmp_path, "--dump-dom")
    assert any("Content Security Policy" in line for line in console), console


def test_budget_page_shows_every_budget_with_its_status(served, upstream, tmp_path):
    chromium()
    seed(served)
    listed = httpx.get(served.url + "/admin/budgets", headers=_h(served)).json()["data"]
    dom, console = run(f"{served.url}/dashboard/budgets?key={served.admin}", tmp_path, "--dump-dom")
    assert console == []
    rows = re.findall(r"<tr class=\"budget-row\">(.*?)</tr>", dom)
    assert len(rows) == sum(len(b["status"]) for b in listed) == 2
    user_row = next(r for r in rows if "per-user" in r)
    (st,) = next(b for b in listed if b["name"] == "per-user")["status"]
    for shown in ("daily", "$5.00", "50%, 80%", st["resets_at"][:10]):
        assert shown in user_row, (shown, user_row)
    for field in ("spent", "held", "remaining"):
        assert re.search(rf'class="num {field}">\$[0-9.,]+<', user_row), (field, user_row)
    assert "100 requests" in dom and "weekly" in dom
    # escaped: the markup is text on the page, never an element
    assert "<img" not in dom and "<script" not in dom
    assert "user=&lt;img src=x onerror=alert(1)&gt;" in dom
    assert "cap&lt;/td&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in dom
    assert served.admin not in dom


def test_rule_page_shows_conditions_action_applications_and_savings(served, upstream, tmp_path):
    chromium()
    seed(served)
    listed = {r["name"]: r for r in httpx.get(served.url + "/admin/rules", headers=_h(served)).json()["data"]}
    assert listed["to-mini"]["metrics"]["applications"] == 2
    dom, console = run(f"{served.url}/dashboard/rules?key={served.admin}", tmp_path, "--dump-dom")
    assert console == []
    rows = re.findall(r"<tr class=\"rule-row\">(.*?)</tr>", dom)
    assert len(rows) == 2
    mini = next(r for r in rows if "to-mini" in r)
    assert "<code>model</code> = gpt-4o" in mini and "<code>use</code> = gpt-4o-mini" in mini
    assert "<code>max_tokens</code> = 300" in mini
    assert re.search(r'class="num applications">2<', mini)
    saved = listed["to-mini"]["metrics"]["saved_usd"]
    assert saved not in ("0", None) and re.search(r'class="num saved">\$[0-9.,]*[1-9]', mini), mini
    hush = next(r for r in rows if "hush" in r)
    assert "&lt;b&gt;urgent&lt;/b&gt;&amp;amp;" in hush and "<b>" not in hush
    assert "<code>deny</code> = not today" in hush


def test_pages_are_visible_keep_the_headers_and_need_an_admin(served, upstream, tmp_path):
    chromium()
    seed(served)
    r = httpx.get(f"{served.url}/dashboard/rules?key={served.admin}")
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/rules"  # the key leaves the URL
    session = {"unillm_session": r.cookies["unillm_session"]}
    for page in ("budgets", "rules"):
        got = httpx.get(f"{served.url}/dashboard/{page}", cookies=session)
        assert got.status_code == 200
        for name, value in SECURITY_HEADERS.items():
            assert got.headers[name] == value
        assert "<script" not in got.text
        assert not re.search(r"(src|href|action)=['\"]?(https?:)?//", got.text)  # nothing from elsewhere
    assert httpx.get(f"{served.url}/dashboard/nope", cookies=session).status_code == 404
    assert httpx.get(f"{served.url}/dashboard/budgets").status_code == 401
    tenant = served.key(user="t")
    assert httpx.get(f"{served.url}/dashboard/budgets?key={tenant}").status_code == 403
    # drawn: the table's ink and the gauge's colour are on the screenshot, not only in the DOM
    shot = tmp_path / "budgets.png"
    _, console = run(f"{served.url}/dashboard/budgets?key={served.admin}", tmp_path, f"--screenshot={shot}")
    assert console == []
    _, _, rows = read_png(shot)
    assert colour_pixels(rows, 0, 600, (0x1F, 0x24, 0x30), tol=30) > 500  # text ink in the table
    assert colour_pixels(rows, 0, 600, (0x3B, 0x5B, 0xDB), tol=30) > 20  # the nav's current link


def test_the_spend_page_links_to_the_new_pages(served):
    r = httpx.get(f"{served.url}/dashboard?key={served.admin}", follow_redirects=True)
    assert "href=\"/dashboard/budgets\"" in r.text.replace("'", '"')
    assert "href=\"/dashboard/rules\"" in r.text.replace("'", '"')

