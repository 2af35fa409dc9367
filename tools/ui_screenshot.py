"""Regenerate ``tools/ui_lineage.png``: the demo's lineage page, as headless chromium draws it.

Builds the demo in a temporary directory (its ids are seeded, so the picture shows the ids
README.md prints), serves it with ``ledger ui`` and has the same ``/usr/bin/chromium`` the
browser tests use take a screenshot of Alice's lineage page.

    .venv/bin/python tools/ui_screenshot.py [--out tools/ui_lineage.png] [--width 1400 --height 950]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.cli.demo import build_demo  # noqa: E402
from tools.ui_server import chromium, missing_chromium, running_ui  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "ui_lineage.png")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=950)
    args = parser.parse_args()
    reason = missing_chromium()
    if reason is not None:
        print(f"cannot take the screenshot: {reason}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'demo.db'}"
        result = build_demo(url)
        result.ledger.close()
        with running_ui(url, analytics="memory") as base:
            chromium(
                "--hide-scrollbars",
                f"--window-size={args.width},{args.height}",
                "--virtual-time-budget=3000",
                f"--screenshot={args.out.resolve()}",
                f"{base}/lineage/{result.featured_lineage}",
            )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
