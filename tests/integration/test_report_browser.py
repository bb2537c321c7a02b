"""report.html loaded in a real headless browser (Debian's chromium, a host tool, so not a
unit test): its pictures are drawn and the page logs nothing to the console."""

from __future__ import annotations

from harness.nightly import report
from tests import browser
from tests.unit.test_html_report import combined


def test_report_renders_in_chromium_with_pictures_and_no_console_errors(tmp_path):
    page = report.write(tmp_path, combined(tmp_path))
    text = page.read_text()
    assert "patch 0001-&lt;x&gt;.patch does not apply" in text  # escaped
    assert "not finished (v6.1)" in text
    assert "4K: 12.0 MiB, 2M: 1012.0 MiB" in text
    loaded = browser.load(page)
    assert loaded.console == []
    assert loaded.attribute("data-pictures-drawn") == "2"
