"""docs/benchmarks.md, the one page of benchmark figures: each script owns the text between its
markers ``<!-- NAME: begin -->`` and ``<!-- NAME: end -->`` and rewrites only that."""

from __future__ import annotations

from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(name: str, section: str, page: Path = PAGE) -> None:
    """Replace the section ``name`` of ``page`` with ``section``, or append it; the rest stays."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    text = page.read_text() if page.is_file() else "# Benchmarks\n\nFigures measured by the scripts in `scripts/`.\n"
    block = f"{begin}\n{section.strip(chr(10))}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)
