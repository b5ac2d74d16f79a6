"""``python -m persistq.ui.server PAGE [--section.option VALUE]...``: serve one web UI.

The page script (``manager.py`` or ``ops.py``) is served by Streamlit's ``st.App``, the
public way to add HTTP routes beside a Streamlit app: here the two that set and clear the
shared session cookie (:mod:`persistq.ui.signin`). The options are Streamlit's own
(``--server.port 8501``), as ``streamlit run`` takes them.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import streamlit as st

from persistq.ui import signin

PAGES = ("manager", "ops")


def option_value(text: str) -> bool | int | str:
    """A command-line value as Streamlit's config wants it (App.run takes typed values)."""
    if text in ("true", "false"):
        return text == "true"
    return int(text) if text.isdigit() else text


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in PAGES or len(argv) % 2 != 1:
        sys.exit(f"usage: python -m persistq.ui.server {'|'.join(PAGES)} [--option value]...")
    page, options = argv[0], argv[1:]
    config = {
        name.removeprefix("--"): option_value(value)
        for name, value in zip(options[::2], options[1::2], strict=True)
    }
    script = Path(__file__).resolve().parent / f"{page}.py"
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the
    # handler it found: make that an exit 0, so Supervisor sees a clean stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    st.App(script, routes=signin.routes()).run(config=config)


if __name__ == "__main__":
    main(sys.argv[1:])
