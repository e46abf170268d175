"""Every code fragment of README.md runs as written; the configuration table is current.

How a fragment is run is said by an HTML comment right before its fence (GitHub does not
show it). Everyone adding a README section follows this convention:

    <!-- readme-test: script -->   python, run as a script in a fresh temporary directory
    <!-- readme-test: pytest -->   python test functions, run by pytest (``anyio_backend``
                                   is provided by a conftest, as the README tells users)
    <!-- readme-test: shell -->    sh/bash, run by ``bash -e`` from the repository root,
                                   where ``.venv/bin/...`` is the environment under test
    <!-- readme-test: setup -->    a set-up command (make a venv, install, start a cluster's
                                   long-running processes): not run here; each command it
                                   starts with must exist, and the test command is the one
                                   ``.ci/run`` runs

A python fragment without a comment is a script. Options follow the kind, space-separated:

    fixtures=mosquitto,postgres    real services the test suite starts; each replaces the
                                   address the fragment names for the machine's own service
                                   (see ``SERVICES``) by its own, for the run
    kafka-topics=a,b               with fixtures=kafka: topics the fragment reads, created
                                   (under fresh names, replaced in the fragment) first
    replace="OLD=>NEW"             a text substitution before the run (a shorter duration)
    with-previous                  run after the previous python fragment (a continuation)
    touch=NAME                     create an empty file NAME in the run's directory first
    timeout=SECONDS                (default 120)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->\s*$")
KINDS = {"script", "pytest", "shell", "setup"}


@dataclass
class Fragment:
    line: int
    language: str
    code: str
    section: str
    kind: str = "script"
    options: dict[str, list[str]] = field(default_factory=dict)
    previous: Fragment | None = None  # the python fragment before it

    @property
    def id(self) -> str:
        return f"README.md:{self.line} ({self.section})"


def fragments() -> list[Fragment]:
    lines = README.read_text().splitlines()
    found: list[Fragment] = []
    section, marker, previous_python = "", None, None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            section = line.lstrip("# ").strip()
        if (m := MARKER.match(line)) is not None:
            marker = m.group(1)
        fence = FENCE.match(line)
        if fence is None:
            if line.strip() and m is None:
                marker = None  # a comment must stand right before its fence
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        fragment = Fragment(i + 1, fence.group(1), "\n".join(lines[i + 1 : end]) + "\n", section)
        if marker is not None:
            kind, *options = shlex.split(marker)
            fragment.kind = kind
            for option in options:
                name, _, value = option.partition("=")
                fragment.options.setdefault(name, []).append(value)
        elif fragment.language not in ("python", ""):
            fragment.kind = "unmarked"
        if fragment.language == "python":
            fragment.previous = previous_python
            previous_python = fragment
        found.append(fragment)
        marker = None
        i = end + 1
    return found


# ---- services a fragment may use, started by the suite's own fixtures ----------------------

ServiceStart = Callable[
    [pytest.FixtureRequest, dict[str, list[str]]], AbstractContextManager[dict[str, str]]
]


@contextmanager
def _mosquitto(request: pytest.FixtureRequest, _: dict[str, list[str]]) -> Iterator[dict[str, str]]:
    broker = request.getfixturevalue("mosquitto")
    yield {"1883": str(broker.port)}


@contextmanager
def _postgres(request: pytest.FixtureRequest, _: dict[str, list[str]]) -> Iterator[dict[str, str]]:
    """A schema of the fragment's own in the machine's database: its tables go there
    (asyncpg takes the search path from the DSN's query, psql from PGOPTIONS)."""
    import asyncpg

    from tests.postgres import DSN, ensure_postgres

    schema = f"readme_{uuid.uuid4().hex[:12]}"

    async def run(sql: str) -> None:
        await ensure_postgres()
        conn = await asyncpg.connect(DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE SCHEMA "{schema}"'))
    try:
        yield {DSN: f"{DSN}?search_path={schema}", "PGOPTIONS": f"-c search_path={schema}"}
    finally:
        asyncio.run(run(f'DROP SCHEMA "{schema}" CASCADE'))


@contextmanager
def _kafka(request: pytest.FixtureRequest, options: dict[str, list[str]]) -> Iterator[dict[str, str]]:
    """The session's Kafka-protocol broker; ``kafka-topics=a,b`` creates the topics the
    fragment reads (a fresh broker has none)."""
    from tests.kafka_brokers import create_topic, unique_topic

    broker = request.getfixturevalue("kafka_broker")
    renamed = {}
    for topic in ",".join(options.get("kafka-topics", [])).split(","):
        if topic:  # a fresh name per run: the session's broker keeps topics across tests
            renamed[f'"{topic}"'] = f'"{unique_topic(topic)}"'
            asyncio.run(create_topic(broker.bootstrap, renamed[f'"{topic}"'].strip('"'), 2))
    yield {**renamed, "127.0.0.1:9092": broker.bootstrap, "KAFKA_BOOTSTRAP": broker.bootstrap}


#: Service name -> what starts it; the mapping it yields: text to replace in the fragment
#: -> its replacement, and environment variables (upper-case names) for the run.
SERVICES: dict[str, ServiceStart] = {
    "mosquitto": _mosquitto,
    "postgres": _postgres,
    "kafka": _kafka,
}


# ---- running a fragment --------------------------------------------------------------------


def _prepared(fragment: Fragment, replacements: dict[str, str]) -> str:
    code = fragment.code
    if "with-previous" in fragment.options:
        assert fragment.previous is not None, f"{fragment.id}: no python fragment before it"
        code = fragment.previous.code + "\n" + code
    for rule in fragment.options.get("replace", []):
        old, _, new = rule.partition("=>")
        assert old in code, f"{fragment.id}: replace={rule!r} matches nothing"
        code = code.replace(old, new)
    for old, new in replacements.items():
        if not old.isupper():
            code = code.replace(old, new)
    return code


def _run(fragment: Fragment, code: str, env: dict[str, str], tmp_path: Path) -> None:
    for name in fragment.options.get("touch", []):
        (tmp_path / name).touch()
    timeout = float(fragment.options.get("timeout", ["120"])[0])
    if fragment.kind == "script":
        (tmp_path / "fragment.py").write_text(code)
        command, cwd = [sys.executable, "fragment.py"], tmp_path
    elif fragment.kind == "pytest":
        (tmp_path / "test_fragment.py").write_text(code)
        (tmp_path / "conftest.py").write_text(
            "import pytest\n\n\n@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'\n"
        )
        command = [sys.executable, "-m", "pytest", "-q", "-p", "anyio", "-p", "no:cacheprovider",
                   "test_fragment.py"]
        cwd = tmp_path
    else:
        command, cwd = ["bash", "-e", "-c", code], ROOT
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    assert result.returncode == 0, (
        f"{fragment.id} failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n"
        f"{result.stderr[-3000:]}"
    )


def _check_setup(fragment: Fragment) -> None:
    """Set-up commands are not run; what they start with must exist, and the test command
    must be what CI runs."""
    ci = (ROOT / ".ci" / "run").read_text()
    for line in fragment.code.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for command in re.split(r"&&|\|\|", line):
            words = shlex.split(command)
            program = next(w for w in words if "=" not in w)  # past VAR=value prefixes
            if program.startswith(".venv/bin/"):
                program = program.removeprefix(".venv/bin/")
                assert (Path(sys.executable).parent / program).exists() or program in (
                    "pip", "python"), f"{fragment.id}: no {program} in the environment"
            else:
                bundled = (Path(sys.executable).parent / program).exists()
                assert bundled or shutil.which(program), f"{fragment.id}: no command {program!r}"
        if "pytest" in line:  # the test command: what CI runs (CI's pip may be quiet)
            assert line in ci.replace("pip install -q ", "pip install "), (
                f"{fragment.id}: the README's test command is not what .ci/run runs"
            )


@pytest.mark.parametrize("fragment", fragments(), ids=lambda f: f.id)
def test_readme_fragment_runs_as_written(
    fragment: Fragment, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    assert fragment.kind in KINDS, (
        f"{fragment.id}: a {fragment.language or 'plain'} fragment needs a "
        f"'<!-- readme-test: KIND -->' comment before it ({', '.join(sorted(KINDS))})"
    )
    if fragment.kind == "setup":
        _check_setup(fragment)
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)}
    replacements: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for name in ",".join(fragment.options.get("fixtures", [])).split(","):
            if name:
                assert name in SERVICES, f"{fragment.id}: unknown fixture {name!r}"
                service = SERVICES[name](request, fragment.options)
                replacements.update(stack.enter_context(service))
        env.update({k: v for k, v in replacements.items() if k.isupper()})
        _run(fragment, _prepared(fragment, replacements), env, tmp_path)


def test_every_fragment_is_found() -> None:
    found = fragments()
    fences = sum(1 for line in README.read_text().splitlines() if line.startswith("```"))
    assert len(found) * 2 == fences


def test_readme_configuration_table_is_current() -> None:
    table = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "conf_table.py")],
        capture_output=True, text=True, check=True,
    ).stdout
    assert table.strip() in README.read_text(), (
        "README.md's configuration table is stale: paste the output of "
        "`python scripts/conf_table.py` into its Configuration section"
    )
