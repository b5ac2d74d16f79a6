"""The README's Python examples run as written: each ```python block in a fresh directory
and a fresh process, with a temp SQLite URL. A block that defines ``test_`` functions is a
pytest module and runs under pytest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```$", README.read_text(encoding="utf-8"), re.M | re.S)


def test_the_readme_has_python_examples_and_the_first_is_a_task() -> None:
    assert len(BLOCKS) >= 3
    first = BLOCKS[0]
    for step in ("persistq.App(", "@app.task", ".delay(", "app.wait("):
        assert step in first


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_a_readme_python_block_runs_as_written(number: int, tmp_path: Path) -> None:
    code = BLOCKS[number]
    script = tmp_path / f"readme_example_{number}.py"
    script.write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
    env["PERSISTQ_URL"] = f"sqlite:///{tmp_path / 'env.db'}"
    command = [sys.executable, str(script)]
    if re.search(r"^def test_", code, re.M):
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"block {number}:\n{code}\n{done.stdout}\n{done.stderr}"
    if number == 0:  # the result the example's comment promises
        assert "{'sent_to': 'ada@example.com', 'chars': 5}" in done.stdout
