"""Print the configuration table (markdown) from StreamingConf.describe().

    python scripts/conf_table.py                 # print it
    python scripts/conf_table.py --update-readme # rewrite README.md's table in place

In README.md the table sits between the markers ``<!-- conf-table:start -->`` and
``<!-- conf-table:end -->``; tests/test_readme.py checks that it is current.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiostream_engine import StreamingConf

START, END = "<!-- conf-table:start -->", "<!-- conf-table:end -->"
README = Path(__file__).resolve().parent.parent / "README.md"


def table() -> str:
    lines = ["| key | default | Spark key | meaning |", "| --- | --- | --- | --- |"]
    for key, default, spark, doc in StreamingConf.describe():
        spark_cell = f"`{spark}`" if spark else "-"
        meaning = doc.replace("|", "\\|")
        lines.append(f"| `{key}` | `{default!r}` | {spark_cell} | {meaning} |")
    return "\n".join(lines) + "\n"


def update_readme(path: Path = README) -> bool:
    """Replace the table between the markers; returns whether the file changed."""
    text = path.read_text()
    head, start, rest = text.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise SystemExit(f"{path}: markers {START} / {END} not found")
    new = f"{head}{START}\n{table()}{END}{tail}"
    if new != text:
        path.write_text(new)
    return new != text


def main(argv: list[str]) -> None:
    if argv == ["--update-readme"]:
        print("README.md updated" if update_readme() else "README.md already current")
    elif not argv:
        print(table(), end="")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
