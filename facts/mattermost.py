"""What the Mattermost server is now, read in ONE round trip.

pyinfra runs every fact as its own SSH channel and caches none, so the deploy asks the
server once per run: the server-side package (mmhelper/, built into one file by
mmhelper/bundle.py) is sent inline - it works on a fresh server before anything is
installed - and answers with JSON: packages missing, the release in use and on disk, the
owned config keys that differ, database role/login, service and health, managed files.
"""

from __future__ import annotations

import base64
import json
import lzma
import shlex

from pyinfra.api import FactBase

from mmhelper.bundle import build as helper_bundle

# Linux takes one argument of at most 128 KiB (MAX_ARG_STRLEN), and sshd hands the whole command
# to the shell as one: the inline helper must stay below it (tests/unit/test_layout.py checks).
COMMAND_LIMIT = 131072


def inline_helper() -> str:
    """A `python3 -c` program carrying the helper, compressed to keep the command short (xz and
    base85: about 30% of the sources; zlib and base64 passed the limit at 134 KB)."""
    packed = lzma.compress(helper_bundle().encode(), format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)
    blob = base64.b85encode(packed).decode()
    return f"import base64,lzma;exec(compile(lzma.decompress(base64.b85decode('{blob}')),'mmhelper','exec'))"


class MattermostServer(FactBase):
    """The state the deploy converges from: the helper's `state` answer as a dict.

    The argument is a JSON query (paths, desired owned config keys, database names):
    no secret is ever part of it. Returns None when python3 is missing on the server.
    """

    def requires_command(self, query: str) -> str:
        return "python3"

    def command(self, query: str) -> str:
        return f"python3 -c {shlex.quote(inline_helper())} state {shlex.quote(query)}"

    def process(self, output: list[str]) -> dict:
        return parse_state(output)


def parse_state(output: list[str]) -> dict:
    text = "\n".join(output).strip()
    try:
        state = json.loads(text)
    except ValueError as e:
        raise ValueError(f"the server's state report is not JSON ({e}): {text[:200]!r}") from None
    if not isinstance(state, dict) or "install" not in state:
        raise ValueError(f"the server's state report is incomplete: {text[:200]!r}")
    return state
