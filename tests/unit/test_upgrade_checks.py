"""The checks before each hop, each rule against what its source says (the constants in
Mattermost's source, measured on the real 10.3 and 11.4; the v11 notes), on facts shaped as
the state read reports them."""

import pytest

from tasks.upgrade_checks import (
    REMOVED_SETTINGS,
    checked,
    first_refusal,
    hop_findings,
    refusal_text,
    removed_settings,
)
from tasks.versions import decide

FACTS = {"active_users": 40, "licensed": False, "postgres_major": 15, "login": {"gitlab": False},
         "plugins_enabled": [], "plugins_unmanaged": [], "settings": {}, "disk": {"path": "/var/backups/mattermost",
                                                                                 "free": 10 << 30, "need": 1 << 30}}


def ids(old, new, **changes):
    return [(f.id, f.level) for f in hop_findings(old, new, {**FACTS, **changes})]


def test_a_small_healthy_server_has_nothing_to_say():
    assert ids("10.3.0", "11.4.0") == []


@pytest.mark.parametrize("active,expected", [
    (199, []), (200, [("user-limit", "warn")]), (249, [("user-limit", "warn")]), (250, [("user-limit", "refuse")]),
    (300, [("user-limit", "refuse")])])
def test_team_editions_account_limit_of_11(active, expected):
    # limits.go of 11.4: maxUsersLimit = 200, maxUsersHardLimit = 250, refused when count >= 250
    assert ids("10.3.0", "11.4.0", active_users=active) == expected


def test_the_limit_is_said_with_what_happens_and_its_source():
    [finding] = hop_findings("10.3.0", "11.4.0", {**FACTS, "active_users": 300})
    assert "refuses every new account from 250 active accounts on; this server has 300" in finding.text
    assert "mattermost_users_create fails" in finding.text and "still log in" in finding.text
    assert "server/channels/app/limits.go of 11.4: maxUsersLimit = 200, maxUsersHardLimit = 250" in finding.source


def test_a_licence_or_a_hop_inside_11_leaves_the_limit_alone():
    assert ids("10.3.0", "11.4.0", active_users=300, licensed=True) == []
    assert ids("11.4.0", "11.7.6", active_users=300) == []  # the same limit before and after
    assert ids("9.11.0", "10.3.0", active_users=6000) == [("user-limit", "warn")]  # 10.3: 5_000 / 11_000
    assert ids("9.11.0", "10.3.0", active_users=11000) == [("user-limit", "refuse")]


def test_postgresql_minimum():
    # store.go: minimumRequiredPostgresVersion 110000 in 10.3, 140000 in 11.4
    assert ids("10.3.0", "11.4.0", postgres_major=13) == [("postgresql-minimum", "refuse")]
    assert ids("9.11.0", "10.3.0", postgres_major=13) == []
    assert ids("9.11.0", "10.3.0", postgres_major=10) == [("postgresql-minimum", "refuse")]
    [finding] = hop_findings("10.3.0", "11.4.0", {**FACTS, "postgres_major": 13})
    assert "needs PostgreSQL 14 or newer" in finding.text and "make os-upgrade" in finding.text
    assert "minimumRequiredPostgresVersion = 140000" in finding.source


def test_gitlab_sign_in_goes_from_team_edition_in_11():
    assert ids("10.3.0", "11.4.0", login={"gitlab": True}) == [("gitlab-sso", "refuse")]
    assert ids("10.3.0", "11.4.0", login={"gitlab": True}, licensed=True) == []
    assert ids("11.4.0", "11.7.6", login={"gitlab": True}) == []  # already gone before this hop
    [finding] = hop_findings("10.3.0", "11.4.0", {**FACTS, "login": {"gitlab": True}})
    assert "server/config/client.go of 11.4" in finding.source


def test_plugins_the_new_version_drops_or_deletes():
    assert ids("10.3.0", "11.4.0", plugins_enabled=["playbooks", "com.example.demo"], playbooks=3) == [
        ("plugin-playbooks", "refuse")]
    assert ids("10.3.0", "11.4.0", plugins_enabled=["playbooks"], playbooks=0) == []  # on by default, unused
    assert ids("10.3.0", "11.4.0", plugins_unmanaged=["com.example.handmade"]) == [("unmanaged-plugins", "refuse")]


def test_settings_a_version_removed_are_named_when_changed():
    assert ids("10.3.0", "11.4.0", settings={"BleveSettings.EnableIndexing": False}) == []  # its default
    assert ids("10.3.0", "11.4.0", settings={"BleveSettings.EnableIndexing": True}) == [("removed-settings", "warn")]
    assert "BleveSettings.EnableSearching" in removed_settings() and len(REMOVED_SETTINGS["11.0.0"]) == 17


def test_version_pairs_to_avoid_and_disk():
    assert ids("10.11.17", "11.7.2") == [("version-pair", "refuse")]
    assert ids("10.11.16", "11.7.2") == [] and ids("10.11.17", "11.7.3") == []
    assert ids("11.4.0", "11.5.0") == [] and ids("11.0.0", "11.7.2") == []  # a server already on 11.x is not on that line
    assert ids("10.3.0", "11.4.0", disk={"path": "/b", "free": 1 << 20, "need": 1 << 30}) == [("disk", "refuse")]


def test_an_accepted_finding_lets_the_hop_start_and_nothing_else_does():
    facts = {**FACTS, "active_users": 300, "login": {"gitlab": True}}
    [limit, gitlab] = hop_findings("10.3.0", "11.4.0", facts, accepted=["user-limit"])
    assert limit.accepted and not limit.refuses and "ACCEPTED [user-limit]" in limit.line()
    assert gitlab.refuses
    assert first_refusal([("10.3.0", "11.4.0")], facts, ["user-limit", "gitlab-sso"]) is None


def test_a_refused_first_hop_blocks_and_a_later_one_cuts_the_chain():
    available = ["9.11.20", "10.3.0", "11.4.0"]
    d = decide("11.4.0", "9.11.20", available, ["9.11", "10.3", "11.4"])
    assert d.chain == [("9.11.20", "10.3.0"), ("10.3.0", "11.4.0")]
    cut = checked(d, {**FACTS, "postgres_major": 13})
    assert cut.chain == [("9.11.20", "10.3.0")] and cut.target == "10.3.0" and not cut.blocked
    assert cut.stops_before.startswith("hop 2 10.3.0 -> 11.4.0: [postgresql-minimum]")
    blocked = checked(d, {**FACTS, "postgres_major": 10})
    assert blocked.blocked and blocked.target == "9.11.20" and blocked.chain == []
    assert 'mattermost_upgrade_accept = ["postgresql-minimum"]' in blocked.blocked
    assert checked(d, None) == d  # nothing read (MySQL, not installed): nothing to say


def test_the_refusal_names_each_finding_with_its_source():
    [(number, old, new, refusing)] = [first_refusal([("10.3.0", "11.4.0")], {**FACTS, "active_users": 251})]
    text = refusal_text(number, old, new, refusing)
    assert text.startswith("hop 1 10.3.0 -> 11.4.0: [user-limit] 11.4.0 (Team Edition, no licence) refuses")
    assert "(source: server/channels/app/limits.go" in text


def test_the_rehearsal_makes_the_copy_harmless_and_reports_it():
    from tasks.rehearsal import harmless, outage_of, report_text

    keys = harmless("https://scratch.example.org")
    assert keys["ServiceSettings.SiteURL"] == "https://scratch.example.org"
    assert keys["EmailSettings.SendEmailNotifications"] is False and keys["EmailSettings.SMTPServer"] == ""
    assert keys["EmailSettings.SendPushNotifications"] is False and keys["ServiceSettings.EnableOutgoingWebhooks"] is False
    assert outage_of("  Mattermost 11.4.0 is serving: stop 0.21s, start with migrations and health 3.10s, the check "
                     "after the start 9.00s") == 3.31
    text = report_text({"production": "chat", "scratch": "scratch", "backup": "b1", "from": "10.3.0", "target": "11.4.0",
                        "harmless": keys, "passed": False, "hops": [
                            {"from": "10.3.0", "to": "11.4.0", "findings": ["ACCEPTED [user-limit]: ..."],
                             "ok": False, "outage_s": 3.3, "error": "upgrade 10.3.0 -> 11.4.0 failed (the plugin x)"}]})
    assert "users waited 3.3 s on the copy: the forecast of production's outage" in text
    assert "check after the start: FAILED: upgrade 10.3.0 -> 11.4.0 failed (the plugin x)" in text
    assert text.endswith("production would stop (or roll back) at the hop above; fix that first")


def test_patch_night_asks_for_a_recent_passed_rehearsal(tmp_path):
    import json

    from tasks.rehearsal import passed_rehearsal

    def write(name, **record):
        (tmp_path / f"rehearsal-chat-{name}.json").write_text(json.dumps(record))

    write("1", target="11.4.0", passed=True, finished=1000.0)
    write("2", target="11.4.0", passed=False, finished=5000.0)
    write("3", target="11.5.0", passed=True, finished=5000.0)
    assert passed_rehearsal(tmp_path, "chat", "11.4.0", days=1, now=1000.0 + 3600)["finished"] == 1000.0
    assert passed_rehearsal(tmp_path, "chat", "11.4.0", days=1, now=1000.0 + 2 * 86400) is None
    assert passed_rehearsal(tmp_path, "other", "11.4.0", days=1, now=1000.0) is None
