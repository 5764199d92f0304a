"""docs/api.md runs: its Python blocks are executed in order, and it documents every exported name."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from spikeforge.train.registry import registered_methods, unregister_method

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_the_api_page_runs() -> None:
    """Your own loop (hybrid → convert → verify; development → compact), the engine, a method of your own."""
    text = DOC.read_text()
    before = {m.section for m in registered_methods()}
    namespace: dict[str, object] = {"__name__": "api_docs"}
    blocks = list(BLOCK.finditer(text))
    assert len(blocks) >= 6
    try:
        for match in blocks:
            padding = "\n" * text[:match.start(1)].count("\n")  # tracebacks point at the page's own lines
            exec(compile(padding + match.group(1), str(DOC), "exec", dont_inherit=True), namespace)  # noqa: S102
    finally:
        for method in registered_methods():
            if method.section not in before:
                unregister_method(method.section)
    assert namespace["report"]["exact"] and "activity.sn2" in namespace["record"]  # type: ignore[index, operator]


@pytest.mark.parametrize("package", ["spikeforge.train", "spikeforge.hybrid", "spikeforge.develop"])
def test_every_exported_name_is_documented(package: str) -> None:
    text = DOC.read_text()
    missing = [name for name in importlib.import_module(package).__all__ if f"`{name}" not in text]
    assert not missing, f"docs/api.md does not mention {package}.{missing}"
