"""Print the commands of a README block marked for CI, so CI runs exactly what the README says.

    python3 .ci/readme_block.py install [README.md]

A marked block is the first fenced code block after a line ``<!-- ci: NAME ... -->``; its
commands are its lines without blank and comment lines. Exits with status 1 and a message when
the marker or the block is missing, the block is empty, or the marker appears more than once:
CI must never run nothing and pass.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def block_commands(text: str, name: str) -> list[str]:
    """The command lines of the block marked ``<!-- ci: NAME -->`` in a Markdown text.

    Raises:
        ValueError: When there is not exactly one such marker, no fenced block after it, or
            no command in the block.
    """
    lines = text.splitlines()
    marker = re.compile(rf"^<!--\s*ci:\s*{re.escape(name)}\b.*-->\s*$")
    found = [i for i, line in enumerate(lines) if marker.match(line.strip())]
    if len(found) != 1:
        raise ValueError(f"{len(found)} markers '<!-- ci: {name} -->' (need exactly one)")
    rest = lines[found[0] + 1 :]
    while rest and not rest[0].strip():
        rest = rest[1:]
    if not rest or not rest[0].strip().startswith("```"):
        raise ValueError(f"no fenced code block right after '<!-- ci: {name} -->'")
    commands: list[str] = []
    for line in rest[1:]:
        if line.strip().startswith("```"):
            break
        if line.strip() and not line.strip().startswith("#"):
            commands.append(line.rstrip())
    else:
        raise ValueError(f"the block after '<!-- ci: {name} -->' is not closed")
    if not commands:
        raise ValueError(f"the block after '<!-- ci: {name} -->' holds no command")
    return commands


def main(argv: list[str]) -> int:
    """Print the commands of the block named ``argv[0]`` in ``argv[1]`` (default README.md)."""
    if not argv or len(argv) > 2:
        print(__doc__, file=sys.stderr)
        return 2
    readme = Path(argv[1] if len(argv) > 1 else Path(__file__).parent.parent / "README.md")
    try:
        commands = block_commands(readme.read_text(), argv[0])
    except (OSError, ValueError) as exc:
        print(f".ci/readme_block.py: {readme}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(commands))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
