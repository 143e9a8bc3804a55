"""Bad input never changes the server: a tampered tarball, a bad or expired signature,
an unknown version, a failed download, a missing secret, bad settings, an unreachable
host. Each ends with one FAILED line that says what to do."""

import json

import pytest

from tests import testhost
from tests.e2e.conftest import deploy, planned_changes, server_fingerprint, sh
from tests.standin import build
from tests.testhost import UPSTREAM_ROOT

UPSTREAM = build.UPSTREAM_HOST


@pytest.fixture(scope="module")
def bad_releases():
    # Stand-in tarballs: each is refused before it is unpacked, so no program in it runs.
    build.ensure_refused_release(UPSTREAM_ROOT, build.TAMPERED)
    build.tamper(UPSTREAM_ROOT, build.TAMPERED)
    build.ensure_refused_release(UPSTREAM_ROOT, build.OTHER_KEY, key="other")
    build.ensure_refused_release(UPSTREAM_ROOT, build.EXPIRED_KEY, key="expired")
    return {"expired_fingerprint": build.keys(UPSTREAM_ROOT)["expired"][1]}


def failed_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("FAILED:")]


@pytest.mark.parametrize("case,args,expected", [
    ("tampered tarball", ["--data", f"mattermost_version={build.TAMPERED}"], "SHA-256 mismatch"),
    ("signed by another key", ["--data", f"mattermost_version={build.OTHER_KEY}"], "not made by the pinned signing key"),
    ("unknown version", ["--data", "mattermost_version=11.99.0"], "not found at"),
    ("mirror down", ["--data", f"mattermost_version={build.MIRROR_DOWN}", "--data",
                     "mattermost_release_url=" + UPSTREAM + "/unavailable/{version}/mattermost-{version}-linux-{arch}.tar.gz"],
     "HTTP 503"),
    ("key URL serves another key", ["--data", f"mattermost_version={build.OTHER_KEY}",
                                    "--data", f"mattermost_signing_key_url={UPSTREAM}/other-pubkey.gpg"],
     "is not the pinned signing key"),
])
def test_refused_release_leaves_server_as_it_was(converged, bad_releases, case, args, expected):
    before = server_fingerprint("e2e-main")
    run = deploy("e2e-main", *args)
    assert not run.ok, f"{case}: the deploy succeeded"
    lines = failed_lines(run.output)
    assert len(lines) == 1 and expected in lines[0], run.output[-3000:]
    assert server_fingerprint("e2e-main") == before, case
    assert ".staging" not in sh("e2e-main", "ls -A /opt/mattermost-releases")


def test_expired_signing_key_is_a_named_error(converged, bad_releases):
    before = server_fingerprint("e2e-main")
    run = deploy("e2e-main", "--data", f"mattermost_version={build.EXPIRED_KEY}",
                 "--data", f"mattermost_signing_key_url={UPSTREAM}/expired-pubkey.gpg",
                 "--data", f"mattermost_signing_key_fingerprint={bad_releases['expired_fingerprint']}")
    lines = failed_lines(run.output)
    assert len(lines) == 1 and "signing key has expired" in lines[0], run.output[-3000:]
    assert server_fingerprint("e2e-main") == before


def test_missing_secret_stops_before_any_change(converged):
    before = server_fingerprint("e2e-main")
    run = deploy("e2e-main", "--data", "postgresql_password_from_env=true")
    lines = failed_lines(run.output)
    assert len(lines) == 1 and "MATTERMOST_DB_PASSWORD is empty on this workstation" in lines[0]
    assert "Starting operation" not in run.output
    assert server_fingerprint("e2e-main") == before


@pytest.mark.parametrize("setting,expected", [
    ("mattermost_version=11", "must be esr, latest, a line like 11.7"),
    ("mattermost_site_url=http://chat.example.org", "must start with https://"),
])
def test_bad_setting_stops_before_any_change(converged, setting, expected):
    run = deploy("e2e-main", "--data", setting)
    lines = failed_lines(run.output)
    assert len(lines) == 1 and expected in lines[0] and "nothing was changed" in lines[0]
    assert "Starting operation" not in run.output


def test_unreachable_host_says_what_to_do(converged):
    desc = json.loads(testhost.host_file("e2e-main").read_text())
    desc.update(name="e2e-unreachable", ssh_port=1)
    testhost.host_file("e2e-unreachable").write_text(json.dumps(desc))
    try:
        run = deploy("e2e-unreachable")
    finally:
        testhost.host_file("e2e-unreachable").unlink()
    lines = failed_lines(run.output)
    assert run.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("FAILED: local-e2e-unreachable: cannot connect over SSH (Could not")


def test_server_still_converged_after_refusals(converged):
    assert planned_changes("e2e-main") == []
