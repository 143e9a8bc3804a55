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
