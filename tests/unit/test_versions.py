"""Release selection for every policy, against release lists shaped like GitHub's for
mattermost/mattermost, and every refusal."""

import pytest

from tasks.versions import decide, hop_notes, is_valid_policy, server_versions, skipped_esr_lines

ESR = ["9.11", "10.5", "10.11", "11.7"]


def rel(tag, day, draft=False, prerelease=False):
    return {"tag_name": tag, "draft": draft, "prerelease": prerelease, "published_at": f"2026-{day}"}


# Newest first by date, as GitHub lists them: an ESR patch (11.7.8) ships after newer
# feature releases, a release candidate and a draft of the next release exist, and the
# repository's Go-module tags sit among the server tags.
RELEASES = [
    rel("v11.7.8", "10-20"),
    rel("v12.1.0-rc2", "10-18", prerelease=True),
    rel("v12.1.0", "10-17", draft=True),
    rel("server/public/v0.4.3", "10-16"),
    rel("v12.0.2", "10-15"),
    rel("v10.11.12", "10-14"),
    rel("v12.0.1", "10-01"),
    rel("v11.7.7", "09-30"),
    rel("v12.0.0", "09-16"),
    rel("v11.10.3", "09-10"),
    rel("v11.7.6", "08-20"),
    rel("v11.7.5", "08-01"),
    rel("v10.11.11", "07-15"),
    rel("v10.5.9", "06-01"),
    rel("v9.11.20", "05-01"),
    rel("v7.1.0", "2022-06"),
    rel("v6.3.10", "2022-01"),
    rel("v11.7.6-rc1", "08-10", prerelease=True),
    rel("v11.7.6-esr", "08-21"),
]
AVAILABLE = server_versions(RELEASES)


def test_only_server_releases_sorted_by_version():
    assert AVAILABLE == ["6.3.10", "7.1.0", "9.11.20", "10.5.9", "10.11.11", "10.11.12", "11.7.5", "11.7.6",
                         "11.7.7", "11.7.8", "11.10.3", "12.0.0", "12.0.1", "12.0.2"]


def test_policies_pick_their_release():
    assert decide("latest", "12.0.1", AVAILABLE, ESR).target == "12.0.2"
    assert decide("esr", "11.7.5", AVAILABLE, ESR).target == "11.7.8"
    assert decide("11.7", "11.7.5", AVAILABLE, ESR).target == "11.7.8"
    assert decide("10.11", "10.11.11", AVAILABLE, ESR).target == "10.11.12"
    assert decide("11.7.6", "11.7.5", None, ESR).target == "11.7.6"  # pinned: no lookup needed


def test_latest_is_highest_version_not_newest_date():
    # by date, the newest release is the ESR patch 11.7.8; by version it is 12.0.2
    assert decide("latest", None, AVAILABLE, ESR).action == "install 12.0.2"


def test_actions():
    assert decide("esr", "11.7.8", AVAILABLE, ESR).action == "up to date"
    assert decide("esr", "11.7.5", AVAILABLE, ESR).action == "upgrade 11.7.5 -> 11.7.8"
    assert decide("esr", None, AVAILABLE, ESR).action == "install 11.7.8"
    d = decide("11.7.6", "11.7.5", None, ESR)
    assert d.upgrade and d.action == "upgrade 11.7.5 -> 11.7.6"


def test_never_downgrades():
    d = decide("esr", "12.0.2", AVAILABLE, ESR)
    assert d.target == "12.0.2" and not d.upgrade
    assert "never downgrades" in d.action
    assert decide("11.7.5", "11.7.6", None, ESR).target == "11.7.6"


def test_esr_line_added_by_the_operator_is_used():
    assert decide("esr", "11.7.8", AVAILABLE, ESR + ["12.0"]).action == "upgrade 11.7.8 -> 12.0.2"


@pytest.mark.parametrize("policy,installed,chain", [
    ("latest", "10.6.0", ["10.6.0", "10.11.12", "11.7.8", "12.0.2"]),
    ("11.7", "10.5.9", ["10.5.9", "10.11.12", "11.7.8"]),
    ("esr", "9.11.20", ["9.11.20", "10.5.9", "10.11.12", "11.7.8"]),
    ("12.0.0", "10.11.12", ["10.11.12", "11.7.8", "12.0.0"]),
])
def test_an_upgrade_over_esr_lines_is_a_chain_through_each(policy, installed, chain):
    d = decide(policy, installed, AVAILABLE, ESR)
    assert not d.blocked and d.upgrade
    assert d.action == "upgrade " + " -> ".join(chain)
    assert d.hops == tuple(chain[1:]) and d.target == chain[-1]
    assert d.chain == list(zip(chain, chain[1:], strict=False))
    direct = decide(policy, installed, AVAILABLE, ESR, allow_esr_skip=True)
    assert direct.hops == (direct.target,) and direct.target == d.target


def test_esr_to_next_esr_is_one_hop():
    assert decide("11.7", "10.11.12", AVAILABLE, ESR).action == "upgrade 10.11.12 -> 11.7.8"
    assert skipped_esr_lines("10.11.12", "11.7.8", ESR) == []
    assert skipped_esr_lines("11.7.8", "12.0.2", ESR) == []


def test_below_7_1_goes_through_7_1():
    d = decide("9.11", "6.3.10", AVAILABLE, ESR)
    assert d.action == "upgrade 6.3.10 -> 7.1.0 -> 9.11.20"
    assert decide("9.11", "6.3.10", AVAILABLE, ESR, allow_below_7_1=True).hops == ("9.11.20",)


def test_a_stop_missing_from_the_release_list_is_refused_with_the_reason():
    listed = [v for v in AVAILABLE if not v.startswith("7.1")]
    d = decide("9.11", "6.3.10", listed, ESR)
    assert d.blocked and "must stop at the ESR line 7.1" in d.blocked and "no 7.1 release" in d.blocked
    assert d.target == "6.3.10"
    # a pinned target without a listing cannot know its stops
    assert decide("11.7.6", "9.11.20", None, ESR).blocked


def test_the_old_server_chain_of_the_tests():
    # the releases built here: 5.39 and 6.3 (old module paths), 10.3 and 11.4; their lines play ESR lines
    built = ["5.39.0", "6.3.0", "10.3.0", "11.4.0"]
    d = decide("esr", "5.39.0", built, ["5.39", "6.3", "10.3", "11.4"], allow_below_7_1=True)
    assert d.action == "upgrade 5.39.0 -> 6.3.0 -> 10.3.0 -> 11.4.0"
    assert hop_notes("5.39.0", "6.3.0") and "6.0" in hop_notes("5.39.0", "6.3.0")[0]
    assert hop_notes("10.3.0", "11.4.0") == []
    # without the 7.1 override the chain needs a 7.1 release the list does not have
    assert "7.1" in decide("esr", "5.39.0", built, ["5.39", "6.3", "10.3", "11.4"]).blocked


def test_lookup_failure_falls_back_only_to_pinned_setting():
    d = decide("latest", "11.7.5", None, ESR, lookup_error="rate limited")
    assert d.blocked and "rate limited" in d.blocked and "mattermost_version_fallback" in d.blocked
    assert d.target == "11.7.5"
    d = decide("latest", "11.7.5", None, ESR, lookup_error="rate limited", fallback="11.7.6")
    assert d.action == "upgrade 11.7.5 -> 11.7.6"
    fresh = decide("esr", None, None, ESR, lookup_error="no network")
    assert fresh.target is None and "no network" in fresh.blocked


def test_held_version_is_not_retried():
    hold = {"version": "11.7.8", "reason": "not healthy after 180s"}
    d = decide("esr", "11.7.5", AVAILABLE, ESR, hold=hold)
    assert d.blocked and "11.7.8 is held after a rollback (not healthy after 180s)" in d.blocked
    assert "make unhold" in d.blocked
    # a chain through a held stop is refused too
    held_stop = decide("esr", "10.5.9", AVAILABLE, ESR, hold={"version": "10.11.12", "reason": "failed"})
    assert held_stop.blocked and "10.11.12 (a stop of the chain to 11.7.8) is held" in held_stop.blocked
    # a newer release than the held one is a new chance
    assert decide("latest", "11.10.3", AVAILABLE, ESR + ["12.0"], hold=hold).upgrade


def test_unknown_line_and_empty_listing():
    assert "no release of line 13.4" in decide("13.4", "12.0.2", AVAILABLE, ESR).blocked
    assert decide("latest", None, [], ESR).target is None


@pytest.mark.parametrize("policy,ok", [("latest", True), ("esr", True), ("11.7", True), ("11.7.6", True),
                                       ("11", False), ("v11.7.6", False), ("newest", False), ("11.7.x", False)])
def test_policy_forms(policy, ok):
    assert is_valid_policy(policy) is ok
