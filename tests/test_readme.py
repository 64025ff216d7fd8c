"""Every console example of the README runs as shown: the `$ ` commands of a block one after the other, with the
shipped configuration, and where the README shows what one prints, exactly that on stdout."""

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import NODE_BIN, ROOT

README = ROOT / "README.md"


@dataclass(frozen=True)
class Example:
    line: int
    command: str
    output: str | None  # None: the README shows no output for it


def examples(text: str) -> list[list[Example]]:
    """The README's console blocks, each the list of its commands."""
    blocks: list[list[Example]] = []
    for block in re.finditer(r"^```console\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        first_line = text.count("\n", 0, block.start()) + 2
        lines = block[1].splitlines()
        found: list[Example] = []
        blocks.append(found)
        index = 0
        while index < len(lines):
            start = index
            command = lines[index].removeprefix("$ ")
            while command.endswith("\\"):
                index += 1
                command = command[:-1] + lines[index].strip()
            index += 1
            shown = []
            while index < len(lines) and not lines[index].startswith("$ "):
                shown.append(lines[index])
                index += 1
            found.append(Example(first_line + start, command, "\n".join(shown) + "\n" if shown else None))
    return blocks


def argv(command: str) -> list[str]:
    """The command as this test runs it: the README's launchers become this checkout's own."""
    words = [re.sub(r"\s+#.*$", "", word) for word in shlex.split(command, comments=True)]
    if words[:1] == ["./scripts/run"]:
        return [sys.executable, "-m", "host", *words[1:]]  # what scripts/run runs once it has installed
    if words[:3] == ["uv", "run", "mcpbot"]:
        return [sys.executable, "-m", "host", *words[3:]]
    if words[:2] == ["npx", "@modelcontextprotocol/inspector"]:
        words = [str(NODE_BIN / "mcp-inspector"), *words[2:]]
    for at in range(len(words) - 2):
        if words[at : at + 3] == ["uv", "run", "python"]:
            words[at : at + 3] = [sys.executable]
    return words


BLOCKS = examples(README.read_text())


def test_the_readme_has_examples() -> None:
    assert sum(map(len, BLOCKS)) >= 5


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: f"README.md:{block[0].line}")
def test_a_readme_example_runs_as_shown(block: list[Example], tmp_path: Path) -> None:
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DATA_DIR": str(tmp_path / "data"),  # the shipped configuration's workspaces, outside the checkout
        "LOG_LEVEL": "WARNING",
    }
    for example in block:
        done = subprocess.run(argv(example.command), cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, f"README.md:{example.line}: {example.command}\n{done.stderr}"
        if example.output is not None:
            assert done.stdout == example.output, f"README.md:{example.line}: {example.command}"
        else:
            assert done.stdout.strip(), f"README.md:{example.line}: {example.command} printed nothing"


def test_examples_are_read_with_their_continuation_lines_and_output() -> None:
    text = "```console\n$ a \\\n    b\nout 1\nout 2\n$ c\n```\n"
    assert examples(text) == [[Example(2, "a b", "out 1\nout 2\n"), Example(6, "c", None)]]
