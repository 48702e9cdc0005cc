"""The report in a real browser: headless Chromium (Debian's package) loads a summary, returns the
DOM after its scripts ran and the console messages, and saves a screenshot. The browser tests use
it; `make screenshots` (``python -m stsflow.report.browser results``) renders every summary of a
results folder into ``results/screenshots/<model>/<sft>/summary.png`` (a rendering of a hashed
file: the manifest skips that folder)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    return next((shutil.which(n) for n in NAMES if shutil.which(n)), None)


def render(page: Path | str, screenshot: Path | str, *, width: int = 1280, height: int = 9000,
           exe: str | None = None, timeout: int = 180) -> tuple[str, list[str]]:
    """(DOM after the page's scripts ran, console messages) of a local page, and a screenshot of
    its top ``width`` × ``height`` pixels. Chromium logs every console message (console.log or
    error, an uncaught exception) on stderr as a CONSOLE line; the report logs none."""
    exe = exe or find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium on PATH: install Debian's `chromium` package")
    with tempfile.TemporaryDirectory() as profile:
        base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}",
                "--virtual-time-budget=10000"]  # let scripts and images settle
        url = Path(page).resolve().as_uri()
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True,
                             timeout=timeout)
        if dom.returncode != 0:
            raise RuntimeError(f"chromium failed on {page}: {dom.stderr[-2000:]}")
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        shot = subprocess.run([*base, f"--window-size={width},{height}",
                               f"--screenshot={Path(screenshot).resolve()}", url],
                              capture_output=True, text=True, timeout=timeout)
        if shot.returncode != 0 or not Path(screenshot).is_file():
            raise RuntimeError(f"chromium screenshot failed on {page}: {shot.stderr[-2000:]}")
    console = [line for line in (dom.stderr + shot.stderr).splitlines() if ":CONSOLE" in line]
    return dom.stdout, console


def main(argv: list[str] | None = None) -> int:
    results = Path((argv if argv is not None else sys.argv[1:] or ["results"])[0])
    pages = sorted(results.glob("reports/*/*/summary.html"))
    if not pages:
        print(f"no summary.html under {results}/reports: run the workflow first", file=sys.stderr)
        return 1
    failed = 0
    for page in pages:
        model, sft = page.parent.parent.name, page.parent.name
        out = results / "screenshots" / model / sft / "summary.png"
        tmp = out.with_name(".summary.tmp.png")  # Chromium picks the format from the suffix
        _, console = render(page, tmp)
        tmp.replace(out)  # atomic: never a half-written screenshot
        failed += bool(console)
        print(f"{out}" + (f"  CONSOLE MESSAGES: {console}" if console else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
