"""The state report the workstation parses."""

import json

import pytest


def test_state_output_is_json_serialisable_shape(mmhelper):
    # The fact parser accepts what `state` prints and rejects anything else.
    from facts.mattermost import parse_state

    sample = {"helper_version": 1, "install": {"kind": "missing"}}
    assert parse_state([json.dumps(sample)]) == sample
    with pytest.raises(ValueError):
        parse_state(["Traceback (most recent call last):"])
    with pytest.raises(ValueError):
        parse_state(["{}"])


def test_key_values_read_as_shadows_tools_read_login_defs(mmhelper, tmp_path):
    path = tmp_path / "login.defs"
    path.write_text("#PASS_MIN_DAYS 7\n# SHA_CRYPT_MIN_ROUNDS 5000\nPASS_MIN_DAYS\t0\nUMASK 022\nPASS_MIN_DAYS   1\n"
                    "SHA_CRYPT_MAX_ROUNDS\n")
    assert mmhelper.key_values(str(path), ["PASS_MIN_DAYS", "SHA_CRYPT_MIN_ROUNDS", "SHA_CRYPT_MAX_ROUNDS"]) == {
        "PASS_MIN_DAYS": "1", "SHA_CRYPT_MIN_ROUNDS": None, "SHA_CRYPT_MAX_ROUNDS": ""}
    assert mmhelper.key_values(str(tmp_path / "missing"), ["PASS_MIN_DAYS"]) is None
