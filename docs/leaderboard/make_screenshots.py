"""Screenshots of the leaderboard page for docs/leaderboard/: `desktop.png` (1280 px wide) and
`phone.png` (390 px wide, a phone's viewport emulated), each of the whole page, and
`superseded.png` (the superseded-results section opened, at 1280 px), built by
`probekit leaderboard build` from a realistic store (31 ranked models of twelve families and
one superseded probekit.result/1 result: tests/leaderboard_fixtures.py), and `study.png`: the
page built from the spectrum × scale study (`index.html` here, from `probekit leaderboard build
--store study --out docs/leaderboard`) at 1280 px on boxes, its first 1500 pixels. Needs
headless Chromium
(/usr/bin/chromium). Run from the repository root:

    .venv/bin/python docs/leaderboard/make_screenshots.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from probekit import leaderboard  # noqa: E402
from tests.leaderboard_fixtures import Browser, realistic, store  # noqa: E402

SHOTS = {"desktop.png": (1280, 800, False), "phone.png": (390, 844, True)}


def main(out: Path = Path(__file__).resolve().parent) -> list[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        leaderboard.build(store(realistic(), tmp / "store"), tmp / "site")
        written = []
        with Browser(tmp) as browser:
            for name, (width, height, mobile) in SHOTS.items():
                browser.open(tmp / "site" / "index.html", width, height, mobile=mobile)
                errors = browser.evaluate("window.__errors")
                if errors:
                    raise SystemExit(f"the page reported errors at {width} px: {errors}")
                written.append(browser.screenshot(out / name))
            browser.open(tmp / "site" / "index.html", 1280, 800)
            browser.evaluate("document.getElementById('superseded').open = true")
            written.append(browser.screenshot(out / "superseded.png", "#superseded"))
            if (out / "index.html").is_file():  # the study's page (the browser reads tmp only)
                (tmp / "study").mkdir()
                shutil.copy(out / "index.html", tmp / "study" / "index.html")
                browser.open(tmp / "study" / "index.html", 1280, 800, fragment="#task=boxes@v3")
                errors = browser.evaluate("window.__errors")
                if errors:
                    raise SystemExit(f"the study page reported errors: {errors}")
                shot = browser.screenshot(out / "study.png")
                from PIL import Image  # the page's top: the table's first rows (63 on boxes)

                with Image.open(shot) as im:
                    top = im.crop((0, 0, im.width, min(im.height, 1500)))
                top.save(shot)
                written.append(shot)
    return written


if __name__ == "__main__":
    for path in main():
        print(f"wrote {path}")
