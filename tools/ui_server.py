"""A real ``ledger ui`` server and the system's headless chromium, for the browser tests,
the screenshot script and the page benchmark (one place for how each is started).

``running_ui(url)`` starts the installed ``ledger ui`` command on a free localhost port in
a child process, waits until it accepts connections, yields its base URL and stops it
(by its own pid) afterwards. ``chromium(...)`` runs ``/usr/bin/chromium`` headless with
the flags the issue names; nothing here downloads a browser.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
)
#: How long a server may take to start listening (opening the store, catching up the analytics).
START_TIMEOUT = 120.0


def missing_chromium() -> str | None:
    """Why the browser cannot run here, or None when it can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (CI installs Debian's chromium: apt-get install -y chromium)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ledger_script() -> str:
    """The ``ledger`` console script of this interpreter's environment."""
    return str(Path(sys.executable).parent / "ledger")


@contextmanager
def running_ui(
    url: str,
    *,
    analytics: str | None = None,
    port: int | None = None,
    timeout: float = START_TIMEOUT,
    stop: int = signal.SIGINT,
) -> Iterator[str]:
    """``ledger ui --db url`` in a child process; yields ``http://127.0.0.1:<port>`` once it listens
    (``timeout`` seconds at most: a big store's first start builds its analytics cache), and
    stops it with ``stop`` (Ctrl-C's SIGINT, or SIGTERM as a service manager sends)."""
    port = port or free_port()
    command = [ledger_script(), "ui", "--db", url, "--port", str(port)]
    if analytics is not None:
        command += ["--analytics", analytics]
    env = {k: v for k, v in os.environ.items() if k not in ("LEDGER_URL", "LEDGER_ANALYTICS")}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ledger ui exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ledger ui did not listen on port {port} within {timeout:.0f} s") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(stop)  # uvicorn shuts down; the command then closes the store
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def chromium(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Headless chromium with ``args`` (``--dump-dom URL``, ``--screenshot=FILE URL``...)."""
    return subprocess.run(
        [str(CHROMIUM), *CHROMIUM_FLAGS, *args], capture_output=True, text=True, timeout=timeout, check=True
    )
