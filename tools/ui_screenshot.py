"""Regenerate the web page's pictures, as headless chromium draws them (its script run first).

Builds the demo in a temporary directory (its ids are seeded, so the pictures show the ids
README.md prints), serves it with ``ledger ui`` and has the same ``/usr/bin/chromium`` the
browser tests use take screenshots: Alice's lineage page (``tools/ui_lineage.png``, the
README's picture), the page of the lineage ``school.class_mean`` wrote
(``docs/images/ui_class_mean.png``) and, from a second store, a 300-version lineage
(``tools/long_lineage.py``; ``docs/images/ui_long_lineage.png``).

    .venv/bin/python tools/ui_screenshot.py [--width 1400 --height 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger import Ledger  # noqa: E402
from ledger.cli.demo import build_demo  # noqa: E402
from tools.long_lineage import build_long_lineage  # noqa: E402
from tools.ui_server import chromium, missing_chromium, running_ui  # noqa: E402

HERE = Path(__file__).resolve().parent
IMAGES = HERE.parent / "docs" / "images"


def shoot(url: str, out: Path, width: int, height: int) -> None:
    chromium(
        "--hide-scrollbars",
        f"--window-size={width},{height}",
        "--virtual-time-budget=4000",
        f"--screenshot={out.resolve()}",
        url,
    )
    print(f"wrote {out}")


def class_mean_lineage(url: str) -> str:
    with Ledger(url, create=False) as led:
        rows = led.sql(
            "select o.lineage_id from executions x join execution_outputs o using (execution_id) "
            "where x.function_name = 'school.class_mean'"
        ).fetchall()
    return str(rows[0][0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args()
    reason = missing_chromium()
    if reason is not None:
        print(f"cannot take the screenshots: {reason}", file=sys.stderr)
        return 1
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'demo.db'}"
        result = build_demo(url)
        result.ledger.close()
        mean = class_mean_lineage(url)
        with running_ui(url, analytics="memory") as base:
            # wider: the whole neighbourhood fits the first screen with readable labels (the README picture)
            shoot(f"{base}/lineage/{result.featured_lineage}", HERE / "ui_lineage.png", args.width + 600, args.height)
            shoot(f"{base}/lineage/{mean}", IMAGES / "ui_class_mean.png", args.width, args.height)
        long_url = f"sqlite:///{Path(tmp) / 'long.db'}"
        lineage = build_long_lineage(long_url, 300)
        with running_ui(long_url, analytics="memory") as base:
            shoot(f"{base}/lineage/{lineage}", IMAGES / "ui_long_lineage.png", args.width, args.height)
    return 0


if __name__ == "__main__":
    sys.exit(main())
