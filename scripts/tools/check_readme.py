#!/usr/bin/env python3
"""Checks that every `vggcache ...` command README.md shows names a real subcommand and only flags
that subcommand's `--help` lists (stdlib only; run by tests/it/readme.rs).

    python3 scripts/tools/check_readme.py PATH/TO/vggcache [README.md]

Commands are taken from fenced code blocks (shell blocks: every line starting with `vggcache`;
`console` blocks: lines starting with `$ vggcache`; python and text blocks are output or code, not
commands) and from inline code spans that start with `vggcache ` (the commands table). A command's
subcommand path is read word by word against each level's `Commands:` list (`vggcache cache verify`
asks `vggcache cache verify --help`). Exits 1 listing every unknown subcommand or flag, else prints
how many commands it checked.
"""

from __future__ import annotations

import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import List, Tuple

SHELL_BLOCKS = {"", "sh", "bash", "shell", "console"}
FLAG = re.compile(r"(?<![\w-])(--[A-Za-z][\w-]*)")


def commands(readme: str) -> List[Tuple[int, str]]:
    """(line number, command without the leading `vggcache`) for every command README.md shows."""
    found: List[Tuple[int, str]] = []
    fence = None  # the info string of the open code block, or None outside one
    pending = ""  # a command continued with a trailing backslash
    for no, line in enumerate(readme.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip().lower()
            pending = ""
            continue
        if fence is None:
            for span in re.findall(r"`([^`]+)`", line):
                if span.startswith("vggcache "):
                    found.append((no, span[len("vggcache "):]))
            continue
        if fence not in SHELL_BLOCKS:
            continue
        if fence == "console":
            if not stripped.startswith("$ "):
                continue
            stripped = stripped[2:].strip()
        text = pending + stripped
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        text = re.sub(r"\s+#.*$", "", text)  # a trailing comment
        if text.startswith("vggcache "):
            found.append((no, text[len("vggcache "):]))
    return found


@lru_cache(maxsize=None)
def help_text(binary: str, path: Tuple[str, ...]) -> str:
    """`vggcache PATH... --help` (raises naming the command when it fails)."""
    r = subprocess.run([binary, *path, "--help"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"`{' '.join(['vggcache', *path, '--help'])}` failed: {r.stderr.strip()}")
    return r.stdout


def subcommands(help: str) -> List[str]:
    """The names under a help text's `Commands:` heading."""
    names, inside = [], False
    for line in help.splitlines():
        if line.strip() == "Commands:":
            inside = True
            continue
        if inside:
            m = re.match(r"^\s{2}([a-z][\w-]*)\b", line)
            if m:
                names.append(m.group(1))
            elif line and not line.startswith(" "):
                inside = False
    return names


def flags(help: str) -> set:
    """The long flags a help text's option lines define (plus --help)."""
    found = {"--help"}
    for line in help.splitlines():
        m = re.match(r"^\s+(?:-\w, )?(--[A-Za-z][\w-]*)", line)
        if m:
            found.add(m.group(1))
    return found


def check(binary: str, name: str, line: int, command: str) -> List[str]:
    """Problems with one command (empty when its subcommand and every flag exist)."""
    words = command.split()
    path: List[str] = []
    for w in words:
        if w.startswith("-"):
            break
        if w in subcommands(help_text(binary, tuple(path))):
            path.append(w)
        else:
            break
    if not path and words and re.fullmatch(r"[A-Z][A-Z_]*", words[0]):
        # A placeholder (`vggcache COMMAND --help`): its flags must exist in every subcommand.
        every = [c for c in subcommands(help_text(binary, ())) if c != "help"]
        return [p for c in every for p in check(binary, name, line, " ".join([c, *words[1:]]))]
    if not path:
        return [f"{name}:{line}: `vggcache {command}`: no such subcommand {words[0]!r}"]
    known = flags(help_text(binary, tuple(path)))
    problems = []
    for flag in FLAG.findall(command):
        if flag not in known:
            problems.append(
                f"{name}:{line}: `vggcache {command}`: `vggcache {' '.join(path)}` has no flag {flag} "
                f"(it has: {', '.join(sorted(known))})"
            )
    return problems


def main(argv: List[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    binary = argv[1]
    readme = Path(argv[2] if len(argv) == 3 else Path(__file__).resolve().parents[2] / "README.md")
    found = commands(readme.read_text(encoding="utf-8"))
    if not found:
        print(f"error: no `vggcache ...` command found in {readme}", file=sys.stderr)
        return 1
    problems = [p for line, cmd in found for p in check(binary, readme.name, line, cmd)]
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"error: {len(problems)} problem(s) in {len(found)} commands of {readme}", file=sys.stderr)
        return 1
    print(f"ok: {len(found)} commands of {readme}: every subcommand and flag exists")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
