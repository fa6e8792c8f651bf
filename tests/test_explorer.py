"""The explorer page: its data, and how it renders in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
from test_windows import FAKE_TEXTS, detect_fake_run, write_fake_run

from critical_windows.analysis import importance
from critical_windows.io import tables
from critical_windows.views import explorer

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def _browser() -> str:
    for name in BROWSERS:
        if found := shutil.which(name):
            return found
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but no headless browser was found (looked for {BROWSERS})")
    pytest.skip("no Chromium found; install it with `apt-get install -y chromium`")


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[Path, int]:
    root = tmp_path_factory.mktemp("run")
    write_fake_run(root)
    curves, windows = detect_fake_run(root)
    run = root / "results" / "fake"

    def read(table: str, schema) -> pl.DataFrame:
        return pl.concat(
            [tables.read_table(run / d / f"{table}.parquet", schema) for d in FAKE_TEXTS]
        )

    questions = pl.concat(
        [
            tables.read_table(root / "results" / "datasets" / f"{d}.parquet", tables.QUESTIONS)
            for d in FAKE_TEXTS
        ]
    )
    html = explorer.build(
        "fake",
        questions,
        read("base", tables.BASE),
        read("truncated", tables.TRUNCATED),
        curves,
        windows,
        per_dataset=6,
        importance=importance.importance(read("graded", tables.GRADED), curves),
    )
    path = root / "explorer.html"
    path.write_text(html)
    return path, 6 * len(FAKE_TEXTS)


def _data(path: Path) -> dict:
    block = re.search(
        r'<script type="application/json" id="data">(.*?)</script>', path.read_text(), re.S
    )
    return json.loads(block.group(1))


def test_segments_cut_in_characters_and_mark_the_window():
    text = "Let 𝑥 = 2. Then 𝑥² = 4. The answer is 4."
    start, end = text.index("Then"), text.index(" The answer")
    parts = explorer.segments(text, [(0.3, start), (0.7, end), (0.9, len(text))], (start, end))
    assert "".join(p[0] for p in parts) == text
    assert [p[0] for p in parts if p[2]] == ["Then 𝑥² = 4."]
    assert [p[1] for p in parts] == [None, 0.3, 0.7, 0.9]


def test_page_is_self_contained_and_capped_per_dataset(page):
    path, shown = page
    html = path.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "no external resources"
    data = _data(path)
    assert len(data["questions"]) == shown and data["meta"]["total"] == 8 * len(FAKE_TEXTS)
    per = {d: [q for q in data["questions"] if q["dataset"] == d] for d in FAKE_TEXTS}
    assert all(len(qs) == 6 for qs in per.values())
    with_window = [q for q in per["math"] if q["window"]]
    assert len(with_window) == 4, "questions with a window are picked first"
    assert "</b>" not in html.split('id="data">')[1].split("</script>")[0]


@pytest.mark.slow
def test_page_renders_in_chromium_without_errors(page, tmp_path):
    browser = _browser()
    path, shown = page
    done = _chromium(browser, tmp_path / "profile", "--dump-dom", path.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    status = re.search(r'<div id="render-status"[^>]*>', dom)
    assert status, "the page script did not run"
    assert 'data-status="ok"' in status.group(0), status.group(0)
    assert f'data-rendered="{shown}"' in status.group(0)
    errors = re.search(r'<div id="errors">(.*?)</div>\s*<main', dom, re.S).group(1)
    assert errors.strip() == "", f"script errors: {errors}"
    assert dom.count('<section class="card"') == shown
    assert dom.count("<mark>") >= 3 * 4, "every dataset's windows are highlighted"
    assert "<svg" in dom and "<polyline" in dom
    # the units view: every piece between cuts shaded by its change in P, the window outlined
    assert dom.count('class="unit"') + dom.count('class="unit inside"') > shown * 3
    assert dom.count('class="unit inside"') >= 3 * 4 and "background: rgba(" in dom
    assert "&lt;b&gt;without&lt;/b&gt;" in dom, "model text is shown as text, not as HTML"

    shot = tmp_path / "explorer.png"
    done = _chromium(
        browser,
        tmp_path / "profile",
        "--hide-scrollbars",
        "--window-size=1280,1600",
        f"--screenshot={shot}",
        path.as_uri(),
    )
    assert done.returncode == 0 and shot.stat().st_size > 20_000, done.stderr[-2000:]


@pytest.mark.slow
def test_filters_preset_in_the_address_hide_other_questions(page, tmp_path):
    browser = _browser()
    path, _ = page
    data = _data(path)
    want = sum(1 for q in data["questions"] if q["window"] and q["orig_right"] is False)
    url = path.as_uri() + "#window=with&answer=wrong"
    dom = _chromium(browser, tmp_path / "profile", "--dump-dom", url).stdout
    assert f'data-shown="{want}"' in dom and 0 < want < len(data["questions"])
    visible = re.findall(r'<section class="card"[^>]*>', dom)
    assert sum("hidden" not in tag for tag in visible) == want


def test_units_carry_their_importance_and_the_window():
    text = "First we add. Then we carry the one. So the sum is 12. The answer is (B)."
    starts = [text.index(s) for s in ("Then", "So", "The answer")]
    rows = [
        {
            "char_start": a,
            "char_end": b,
            "unit_index": i + 1,
            "delta_p": d,
            "delta_p_low": d - 0.2,
            "delta_p_high": d + 0.2,
            "kl": k,
        }
        for i, (a, b, d, k) in enumerate(
            zip(starts, [*starts[1:], len(text)], [0.1, 0.6, 0.0], [0.05, 1.2, 0.0], strict=True)
        )
    ]
    window = (starts[1], starts[2])
    units = explorer.units(text, rows, window)
    assert "".join(u[0] for u in units) == text
    assert units[0] == ["First we add. ", 0, None, None, None, None, False]
    assert [u[1] for u in units] == [0, 1, 2, 3]
    assert [u[0] for u in units if u[6]] == ["So the sum is 12. "]
    assert units[2][2] == 0.6 and units[2][5] == 1.2
