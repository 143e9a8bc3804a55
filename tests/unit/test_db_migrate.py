"""The MySQL -> PostgreSQL move as the operator reads it: its settings, its spec (no secret),
the plan's text with its refusals."""

import json
import runpy

from tasks import db_migrate
from tasks.settings import ROOT, SettingsError, load_settings

DEFAULTS = {k: v for k, v in runpy.run_path(str(ROOT / "group_data" / "all.py")).items() if not k.startswith("__")}

PLAN = {
    "refusals": [], "warnings": [], "driver": "mysql", "server": "10.11.19-MariaDB-0+deb12u1", "version": "5.39.0",
    "source": {"user": "mmuser", "host": "localhost", "port": 3306, "socket": None, "database": "mattermost"},
    "auth_plugin": "mysql_native_password",
    "tables": {"count": 56, "rows": 190, "bytes": 3 << 20, "largest": [["Posts", 22, 1 << 20]], "unknown": []},
    "disk": {"/var/lib/postgresql": {"need": 70 << 20, "free": 50 << 30}},
    "postgresql": {"running": True, "exists": True, "foreign_tables": 0},
    "estimate": {"outage_s": 10.2, "basis": "measured"}, "state": {},
}


def test_settings_group_and_its_check():
    s = load_settings(DEFAULTS, "chat.example.org", environ={})
    assert s.migration.extra_tables == "refuse"
    s = load_settings({**DEFAULTS, "db_migrate_extra_tables": "copy"}, "chat.example.org", environ={})
    assert s.migration.extra_tables == "copy"
    try:
        load_settings({**DEFAULTS, "db_migrate_extra_tables": "drop"}, "chat.example.org", environ={})
    except SettingsError as e:
        assert "db_migrate_extra_tables must be one of refuse, copy, leave" in str(e)
    else:
        raise AssertionError("a bad db_migrate_extra_tables was accepted")


def test_spec_holds_no_secret_and_the_deploys_datasource():
    s = load_settings(DEFAULTS, "chat.example.org", environ={"MATTERMOST_DB_PASSWORD": "a-very-secret-pw-1"})
    spec = db_migrate.spec(s)
    assert "a-very-secret-pw-1" not in json.dumps(spec)
    assert spec["pg_datasource"]["params"] == "sslmode=disable&connect_timeout=10&binary_parameters=yes"
    assert "posts" in spec["known_tables"] and "db_migrations" in spec["known_tables"]


def test_the_datasource_the_move_writes_is_the_one_the_deploy_owns():
    from tasks.config import desired_config

    s = load_settings(DEFAULTS, "chat.example.org", environ={})
    assert desired_config(s)["SqlSettings.DataSource"]["$datasource"] == db_migrate.spec(s)["pg_datasource"]


def test_plan_text_ready_and_refused():
    text = db_migrate.plan_text("chat", PLAN)
    assert "from: MySQL 10.11.19-MariaDB-0+deb12u1 at localhost:3306, database mattermost, user mmuser" in text
    assert "users wait about 10.2 s" in text and "ready: `make db-migrate`" in text
    refused = db_migrate.plan_text("chat", {**PLAN, "refusals": ["tables Mattermost did not make: focalboard_blocks"],
                                            "tables": {**PLAN["tables"], "unknown": ["focalboard_blocks"]}})
    assert "REFUSED: tables Mattermost did not make: focalboard_blocks" in refused and "ready:" not in refused
    unfinished = db_migrate.plan_text("chat", {**PLAN, "state": {"status": "running", "done": ["backup", "stop"]}})
    assert "an earlier migration stopped after: backup, stop" in unfinished
    done = db_migrate.plan_text("chat", {"nothing_to_do": "the database is already postgres",
                                         "state": {"status": "done", "outage_s": 5.0}})
    assert "nothing to migrate" in done and "users waited 5.0 s" in done
