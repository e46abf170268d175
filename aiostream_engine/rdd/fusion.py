"""Consecutive per-record operators fused into one loop.

Run as one generator each, a chain of per-record operators (``flat_map``, ``map``,
``filter`` ...) costs one generator resumption per record per operator, and the shuffle's
map-side combine one more: in word count (flat_map, map, reduce_by_key) that was a fifth
of a map task's time. A task therefore runs each run of per-record operators as one
function of nested loops, generated from one template per operator (as ``dataclasses``
and ``namedtuple`` generate their methods) and compiled once per sequence of operators.
It comes in two forms: a generator of the chain's outputs, and the map-side combine of a
shuffle consuming the chain directly.

Error reports: the generated functions' code objects are registered with, for each line,
the operator it belongs to (``line_owners``), so a failing user function is named from the
line of the generated frame its traceback passes through.

StopIteration: a user function's StopIteration must not end a loop early. The generator
form turns it into a RuntimeError (PEP 479); the combine form is a plain function, called
by the task directly, so the StopIteration propagates as an error. Both call user
functions in their own statements, never through builtins like ``map`` and ``filter``,
whose iteration a StopIteration would silently end.
"""

from __future__ import annotations

import linecache
import operator as op
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import CodeType
from typing import Any

#: What each operator does to the current record ``{x}``, binding ``{out}`` (``f{i}``: its
#: function; a line ending with ":" opens a block holding the lines after it).
TEMPLATES: dict[str, tuple[str, ...]] = {
    "map": ("{out} = f{i}({x})",),
    "flat_map": ("for {out} in f{i}({x}):",),
    "filter": ("if not f{i}({x}): continue", "{out} = {x}"),
    "map_values": ("k{i}, v{i} = {x}", "{out} = (k{i}, f{i}(v{i}))"),
    "flat_map_values": ("k{i}, v{i} = {x}", "for y{i} in f{i}(v{i}):", "{out} = (k{i}, y{i})"),
    "key_by": ("{out} = (f{i}({x}), {x})",),
    "keys": ("{out} = {x}[0]",),
    "values": ("{out} = {x}[1]",),
}

_EMIT = ("yield {x}",)

# One lookup and one store per record for a key already seen (the common case), instead
# of a membership test, a lookup and a store.
_COMBINE = (
    "key, value = {x}",
    "try:",
    "    combiner = combined[key]",
    "except KeyError:",
    "    combined[key] = create(value)",
    "else:",
    "    combined[key] = {merged}",
)

#: Merge functions that are an operator: the combine applies the operator itself, as
#: ``combiner + value`` rather than ``merge(combiner, value)``, which is the same operation
#: without a call per record (word count's ``add``: about 4% of its map task).
_OPERATOR_MERGES: tuple[tuple[Callable[[Any, Any], Any], str], ...] = (
    (op.add, "+"),
    (op.mul, "*"),
    (op.or_, "|"),
    (op.and_, "&"),
)

#: The operator of each line of every generated function, by its code object.
_LINES: dict[CodeType, dict[int, str]] = {}


@dataclass(frozen=True)
class RecordStep:
    """One per-record operator of a chain: its name (a key of ``TEMPLATES``) and function."""

    operator: str
    function: Callable[..., Any] | None = None


def line_owners(code: CodeType) -> dict[int, str] | None:
    """For a generated function's code: the operator of each line that runs one (the loop's
    own lines, reading the input, emitting and combining, have none); None for other code."""
    return _LINES.get(code)


def run_steps(steps: tuple[RecordStep, ...], _index: int, records: Iterator[Any]) -> Iterator[Any]:
    """The chain's outputs over a partition (a ``Stage`` function)."""
    fused = _compiled(tuple(s.operator for s in steps), combine=False)
    return fused(records, *(s.function for s in steps))


def combine_steps(
    steps: tuple[RecordStep, ...],
    records: Iterable[Any],
    create: Callable[[Any], Any],
    merge: Callable[[Any, Any], Any],
) -> dict[Any, Any]:
    """Map-side combine of the chain's (key, value) outputs into one dict, in one loop."""
    symbol = next((symbol for function, symbol in _OPERATOR_MERGES if merge is function), None)
    fused = _compiled(tuple(s.operator for s in steps), combine=True, merge_operator=symbol)
    return fused(records, create, merge, *(s.function for s in steps))


_CACHE: dict[tuple[tuple[str, ...], bool, str | None], Callable[..., Any]] = {}


def _compiled(
    operators: tuple[str, ...], combine: bool, merge_operator: str | None = None
) -> Callable[..., Any]:
    """The generated function for a sequence of operators, compiled on first use (a
    graph has few distinct chains). ``merge_operator``: see ``_OPERATOR_MERGES``."""
    key = (operators, combine, merge_operator)
    if key not in _CACHE:
        _CACHE[key] = _compile(operators, combine, merge_operator)
    return _CACHE[key]


def _compile(operators: tuple[str, ...], combine: bool, merge_operator: str | None) -> Callable[..., Any]:
    lines, owners = _source(operators, combine, merge_operator)
    form = "combine" if combine else "chain"
    filename = f"<fused {form}: {', '.join(operators)}>"
    source = "\n".join(lines) + "\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own templates
    function = namespace["fused"]
    _LINES[function.__code__] = owners
    # Tracebacks (an OperatorError's trace) then show the generated lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return function


def _source(
    operators: tuple[str, ...], combine: bool, merge_operator: str | None
) -> tuple[list[str], dict[int, str]]:
    """The function's source lines, and the operator owning each step line (1-based)."""
    functions = "".join(f", f{i}" for i in range(len(operators)))
    if combine:
        lines = [f"def fused(records, create, merge{functions}):", "    combined = {}"]
    else:
        lines = [f"def fused(records{functions}):"]
    lines.append("    for x0 in records:")
    owners: dict[int, str] = {}
    depth = 2
    for i, operator in enumerate(operators):
        for template in TEMPLATES[operator]:
            lines.append("    " * depth + template.format(i=i, x=f"x{i}", out=f"x{i + 1}"))
            owners[len(lines)] = operator
            depth += template.endswith(":")
    terminal = _COMBINE if combine else _EMIT
    merged = "merge(combiner, value)" if merge_operator is None else f"combiner {merge_operator} value"
    lines.extend(
        "    " * depth + line.format(x=f"x{len(operators)}", merged=merged) for line in terminal
    )
    if combine:
        lines.append("    return combined")
    return lines, owners
