"""The operator's verbs: every `make X` the README names is a target, each defined once (make
keeps the last of two recipes and only warns), every .PHONY target defined."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = (ROOT / "Makefile").read_text()


def targets() -> Counter:
    """Each target name and how many rules make it (`a b: setup` makes both)."""
    rules = re.finditer(r"^([a-z][a-z0-9 -]*):(?!=)", MAKEFILE, re.M)
    return Counter(name for rule in rules for name in rule.group(1).split())


def phony() -> set[str]:
    text = re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", MAKEFILE, re.M).group(1)
    return set(text.replace("\\\n", " ").split())


def test_each_target_is_defined_once():
    assert [name for name, n in targets().items() if n > 1] == []


def test_every_phony_target_is_defined_and_every_target_phony():
    assert phony() - set(targets()) == set()
    assert set(targets()) - phony() == set()


def test_every_make_command_in_the_readme_is_a_target():
    named = set(re.findall(r"`make ([a-z][a-z0-9-]*)", (ROOT / "README.md").read_text()))
    assert named, "the README names no make command"
    assert named - set(targets()) == set()
