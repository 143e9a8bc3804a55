"""The other server people have: Mattermost 5.39 installed by hand years ago on PostgreSQL
(Debian 12), used since. No migration: one `make deploy` adopts it and walks the upgrade
chain 5.39 -> 6.3 -> 10.3 -> 11.4, hop by hop - here killed in the middle of the second hop,
and run again, it goes on from the last healthy hop. The PyPI client then reads back
everything made at the start; a second deploy changes nothing."""

from __future__ import annotations

import json

import pytest

from tests import testhost
from tests.e2e import oldstory
from tests.e2e.conftest import KEEP, deploy, planned_changes, sh
from tests.e2e.oldstory import OLD, everything_is_there, old_login
from tests.standin.build import ESR_VERSION, OLD_RELEASES, OLDER_ESR

TARGET = "e2e-oldpg"
PORT = 24452
DB_PASSWORD = "old-postgres-password-4711"  # the hand install's, test only
CHAIN = [OLD, *OLD_RELEASES[1:], OLDER_ESR, ESR_VERSION]
STATE: dict = {}


@pytest.fixture(scope="module")
def old_server():
    STATE["made"] = oldstory.start_old_server(TARGET, 22332, PORT, "postgres", DB_PASSWORD)
    yield TARGET
    if not KEEP:
        testhost.stop_server(TARGET)


def running_version() -> str:
    """What the server answers on its own port (nginx comes later in a run that was killed)."""
    header = sh(TARGET, "curl -s -D - -o /dev/null http://127.0.0.1:8065/api/v4/system/ping | grep -i '^x-version-id' || true")
    return ".".join(header.split(":", 1)[-1].strip().split(".")[:3])


def test_diff_shows_adoption_and_every_hop_and_changes_nothing(old_server):
    before = sh(TARGET, "stat -c %Y /opt/mattermost; systemctl show -p MainPID --value mattermost")
    changes = planned_changes(TARGET)
    assert f"Adopt the hand-installed Mattermost {OLD} in /opt/mattermost" in changes, changes
    hops = list(zip(CHAIN, CHAIN[1:], strict=False))
    for number, (a, b) in enumerate(hops, 1):
        assert f"Upgrade Mattermost {a} -> {b} (hop {number} of {len(hops)})" in changes, changes
    assert sh(TARGET, "stat -c %Y /opt/mattermost; systemctl show -p MainPID --value mattermost") == before


def test_a_chain_killed_in_its_second_hop_goes_on_from_the_last_healthy_one(old_server):
    second = CHAIN[2]
    # kill the second hop's helper as soon as it starts (its preflight, while 6.3 serves); "[m]" keeps
    # the pattern from matching this watcher's own command line
    pattern = f"[m]mhelper.py upgrade .*\"to\": \"{second}\""
    sh(TARGET, f"(while ! pgrep -f '{pattern}' >/dev/null; do sleep 0.05; done; pkill -9 -f '{pattern}') "
               ">/dev/null 2>&1 &")
    killed = deploy(TARGET, timeout=3600)
    assert not killed.ok, killed.output[-4000:]
    assert f"Upgrade Mattermost {CHAIN[0]} -> {CHAIN[1]} (hop 1 of 3)" in killed.output
    # the first hop is done and serves
    assert sh(TARGET, "readlink /opt/mattermost").strip() == f"/opt/mattermost-releases/{CHAIN[1]}"
    assert running_version() == CHAIN[1]
    again = deploy(TARGET, timeout=3600)
    assert again.ok, again.output[-6000:]
    assert f"Upgrade Mattermost {CHAIN[1]} -> {CHAIN[2]} (hop 1 of 2)" in again.output
    assert f"Upgrade Mattermost {CHAIN[2]} -> {CHAIN[3]} (hop 2 of 2)" in again.output
    assert running_version() == ESR_VERSION
    old_login(PORT, "alice").posts.get_post(STATE["made"]["posts"]["welcome"])
    assert DB_PASSWORD not in killed.output + again.output
    # each hop left its pre-upgrade backup
    kinds = [json.loads(sh(TARGET, f"cat /var/backups/mattermost/{name}/manifest.json"))
             for name in sh(TARGET, "ls /var/backups/mattermost").split()]
    def version_key(v):
        return [int(x) for x in v.split(".")]

    assert sorted((m["upgraded_to"] for m in kinds if m.get("upgraded_to")), key=version_key) == CHAIN[1:]


def test_everything_made_years_ago_is_there_on_11_4(old_server):
    everything_is_there(PORT, STATE["made"])


def test_a_second_deploy_changes_nothing(old_server):
    assert planned_changes(TARGET) == []
