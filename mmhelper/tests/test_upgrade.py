"""The new release's own verdict on the live config."""


# What the real Mattermost 11.4.0 binary printed for `db migrate --dry-run` (tests/realmm
# build) with a config it rejects, and with a good config and no database to reach.
REJECTED = """{"level":"warn","msg":"DefaultServerLocale must be one of the supported locales."}
Error: failed to load configuration: failed to create store: unable to load on store creation: invalid config: \
Config.IsValid: model.config.is_valid.experimental_view_archived_channels.app_error
Usage:
  mattermost db migrate [flags]
"""


ACCEPTED = """error [2026-11-24 09:37:48.013 Z] Failed to ping DB caller="sql/sql_utils.go:51" database=master
Error: failed to create migrator: error in initializing connection: dial tcp 127.0.0.1:1: connect: connection refused
"""


def test_config_check_reads_the_real_binarys_verdict(mmhelper):
    assert mmhelper.parse_config_check(ACCEPTED) is None
    reason = mmhelper.parse_config_check(REJECTED)
    assert reason.startswith("failed to create store") and "experimental_view_archived_channels" in reason
