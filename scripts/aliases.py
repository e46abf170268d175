"""Write (or check) the blocks that declare PySpark's names for type checkers.

``aliases.install`` adds PySpark's camelCase names to the engine's classes when the package
is imported; type checkers do not see that. Each class therefore carries a block, between
the markers below, declaring every alias with its method's return type (any arguments,
since the aliases take PySpark's keyword names too). This script writes those blocks from
``aliases.ALIASES``; ``tests/test_aliases.py`` fails when one is stale.

    python scripts/aliases.py            # exit 1 and list the stale blocks
    python scripts/aliases.py --update   # rewrite them
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import aiostream_engine
from aiostream_engine.aliases import ALIASES, camel_case

BEGIN = "    # PySpark's names, written by `python scripts/aliases.py --update` from aliases.ALIASES"
END = "    # end of PySpark's names"


def declarations(cls: type) -> list[str]:
    lines = ["    if TYPE_CHECKING:"]
    for name in ALIASES[cls.__name__]:
        camel = camel_case(name)
        if camel == name:
            continue
        attribute = inspect.getattr_static(cls, name)
        if isinstance(attribute, property):
            returns = inspect.signature(attribute.fget).return_annotation  # type: ignore[arg-type]
            lines.append(f"        {camel}: {returns}")
            continue
        returns = inspect.signature(getattr(cls, name)).return_annotation
        if isinstance(attribute, classmethod):
            lines.append(f"        {camel}: ClassVar[Callable[..., {returns}]]")
        else:
            lines.append(f"        {camel}: Callable[..., {returns}]")
    return lines


def rewritten(cls: type) -> tuple[Path, str, str]:
    """The class's source file, its text, and its text with a current block."""
    path = Path(inspect.getsourcefile(cls) or "")
    text = path.read_text()
    lines = text.split("\n")
    header = f"class {cls.__name__}"
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    begin = next(i for i in range(start, len(lines)) if lines[i] == BEGIN)
    end = next(i for i in range(begin, len(lines)) if lines[i] == END)
    new = lines[: begin + 1] + declarations(cls) + lines[end:]
    return path, text, "\n".join(new)


def main(argv: list[str]) -> int:
    stale = []
    for cls in aiostream_engine._PYSPARK_NAMED:
        path, text, new = rewritten(cls)
        if new != text:
            stale.append(f"{path}: {cls.__name__}")
            if "--update" in argv:
                path.write_text(new)
    if stale and "--update" not in argv:
        print("stale PySpark name declarations (run python scripts/aliases.py --update):")
        print("\n".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
