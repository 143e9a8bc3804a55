"""The MySQL -> PostgreSQL move's pure parts: Go's MySQL DataSource, the login plugin, the
comparable form of each column type, the order-independent digest, the pgloader command,
and SqlSettings left alone while the database is MySQL."""

import pytest

from mmhelper.jobs import db_migrate_copy
from mmhelper.parts import db_compare, mysql
from mmhelper.parts.common import Failure
from mmhelper.parts.config import applicable


@pytest.mark.parametrize("dsn,expected", [
    # the 5.x install guide's form
    ("mmuser:mmuser-password@tcp(localhost:3306)/mattermost?charset=utf8mb4,utf8&readTimeout=30s&writeTimeout=30s",
     {"user": "mmuser", "password": "mmuser-password", "host": "localhost", "port": 3306, "socket": None,
      "database": "mattermost", "params": "charset=utf8mb4,utf8&readTimeout=30s&writeTimeout=30s"}),
    # a unix socket, and a password holding the separators Go's parser allows there
    ("mm:p@ss:w/rd@unix(/run/mysqld/mysqld.sock)/chat",
     {"user": "mm", "password": "p@ss:w/rd", "host": "localhost", "socket": "/run/mysqld/mysqld.sock",
      "database": "chat"}),
    ("mm:x@tcp(db.internal)/mattermost", {"host": "db.internal", "port": 3306}),
    ("mm:x@tcp([::1]:3307)/mattermost", {"host": "::1", "port": 3307}),
    ("mm@/mattermost", {"user": "mm", "password": "", "host": "127.0.0.1"}),
])
def test_go_mysql_datasource(dsn, expected):
    parsed = mysql.parse_mysql_datasource(dsn)
    assert {k: parsed[k] for k in expected} == expected
    assert "password" not in mysql.public_parts(parsed)


@pytest.mark.parametrize("dsn", ["postgres://u:p@h/db", "", "no-slash", "u:p@tcp(h)/"])
def test_not_a_mysql_datasource(dsn):
    assert mysql.parse_mysql_datasource(dsn) is None


def test_login_plugin_from_create_user():
    assert mysql.plugin_of("CREATE USER `mmuser`@`localhost` IDENTIFIED BY PASSWORD '*1368B98F'") == \
        "mysql_native_password"
    assert mysql.plugin_of("CREATE USER `mm`@`%` IDENTIFIED VIA ed25519 USING 'abc'") == "ed25519"
    assert mysql.plugin_of("CREATE USER 'mm'@'%' IDENTIFIED WITH 'caching_sha2_password' AS '$A$005$'") == \
        "caching_sha2_password"
    assert mysql.plugin_of("CREATE USER `mm`@`localhost`") is None


def test_comparable_forms_match_across_the_two_servers():
    hexed = lambda s: s.encode().hex()  # noqa: E731
    # JSON: jsonb reorders keys and drops spaces; MySQL's text keeps what was written
    assert db_compare.comparable(hexed('{"b": 1, "a": "\\u00e9"}'), "json") == \
        db_compare.comparable(hexed('{"a":"é","b":1}'), "json")
    assert db_compare.comparable(hexed("1.50"), "number") == db_compare.comparable(hexed("1.5"), "number")
    assert db_compare.comparable(hexed("abc  "), "char") == "abc"
    assert db_compare.comparable(db_compare.MISSING, "text") is None
    assert db_compare.comparable(hexed(""), "text") == ""  # an empty string is not NULL
    assert db_compare.comparable("00ff", "bytes") == "00ff"


def test_digest_ignores_order_and_sees_every_change():
    kinds = ["text", "bool"]
    rows = [[b"a".hex(), b"1".hex()], [b"b".hex(), b"0".hex()], [b"c".hex(), db_compare.MISSING]]
    count, digest = db_compare.digest_rows(rows, kinds)
    assert count == 3 and (count, digest) == db_compare.digest_rows(list(reversed(rows)), kinds)
    changed = [rows[0], [b"b".hex(), b"1".hex()], rows[2]]
    assert db_compare.digest_rows(changed, kinds)[1] != digest
    doubled = rows + [rows[0]]
    assert db_compare.digest_rows(doubled, kinds)[1] != digest
    swapped = [[b"1".hex(), b"a".hex()], rows[1], rows[2]]  # values moved between columns
    assert db_compare.digest_rows(swapped, kinds)[1] != digest


def test_digests_read_from_one_batched_stream():
    plans = {"a": {"kinds": [("x", "X", "text")]}, "b": {"kinds": [("y", "Y", "number")]}}
    lines = ["=a\n", b"one".hex() + "\n", "=b\n"]
    out = db_compare._digests(lines, plans)
    assert out["a"][0] == 1 and out["b"] == (0, f"{0:064x}")


def test_pgloader_command_copies_rows_into_mattermosts_schema():
    ds = mysql.parse_mysql_datasource("mmuser:p@ss:w/rd#%x?&y=1@tcp(localhost:3306)/mattermost")
    pg = {"user": "mmuser", "host": "localhost", "port": 5432, "database": "mattermost"}
    text = db_migrate_copy.pgloader_command(ds, pg, ["focalboard_blocks"], create=False)
    # no password in the command file: pgloader reads MYSQL_PWD and PGPASSWORD (it decodes none)
    assert "FROM mysql://mmuser@localhost:3306/mattermost" in text and "p@ss" not in text
    assert "INTO postgresql://mmuser@localhost:5432/mattermost" in text
    assert "data only, truncate" in text and "EXCLUDING TABLE NAMES MATCHING 'focalboard_blocks'" in text
    assert "ALTER SCHEMA 'mattermost' RENAME TO 'public'" in text
    extra = db_migrate_copy.pgloader_command(ds, pg, ["focalboard_blocks"], create=True)
    assert "create tables" in extra and "INCLUDING ONLY TABLE NAMES MATCHING 'focalboard_blocks'" in extra
    plain = db_migrate_copy.pgloader_command(ds, pg, [], create=False)
    assert plain.startswith("LOAD DATABASE\n  FROM mysql://") and "EXCLUDING" not in plain
    assert plain.endswith("ALTER SCHEMA 'mattermost' RENAME TO 'public'\n;\n")


def test_a_socket_is_named_as_pgloader_reads_it():
    ds = mysql.parse_mysql_datasource("mmuser:secret@unix(/run/mysqld/mysqld.sock)/mattermost?charset=utf8mb4")
    # the ':' ends the socket path (with '/', pgloader read the rest as an SQLite file)
    assert mysql.url(ds) == "mysql://mmuser@unix:/run/mysqld/mysqld.sock:/mattermost"
    with pytest.raises(Failure, match="characters pgloader cannot read"):
        mysql.url({**ds, "socket": "/run/my sql/mysqld.sock"})


@pytest.mark.parametrize("line", [
    '2026-12-04T10:00:00.1 ERROR mysql: Failed to connect to mysql at "127.0.0.1" (port 3306) as user "mmuser": '
    'MySQL Error [1045]: "Access denied for user \'mmuser\'@\'localhost\' (using password: YES)"',
    '2026-12-04T10:00:00.1 LOG Migrating from #<SQLITE-CONNECTION sqlite:///root/mysql:/mmuser@unix:/x/mattermost>',
    '2026-12-04T10:00:00.1 ERROR sqlite: Failed to open sqlite file #P"/root/x": Could not open sqlite3 database',
    "KABOOM!",
    '2026-12-04T10:00:00.1 ERROR Database error 22001: value too long for type character varying(26)',
])
def test_a_pgloader_error_line_fails_the_copy(line):
    # pgloader exits 0 on these (measured on 3.6.9 and 3.6.2): its log is the verdict
    assert db_migrate_copy.pgloader_failure("2026-12-04T10:00:00 LOG pgloader version 3.6.7~devel\n" + line + "\n")


def test_a_clean_pgloader_log_passes():
    assert db_migrate_copy.pgloader_failure("2026-12-04 LOG pgloader version\n   Total import time  ✓  2  2 0.1s\n") is None


def test_sqlsettings_are_left_alone_while_on_mysql():
    desired = {"SqlSettings.DriverName": "postgres", "SqlSettings.DataSource": "postgres://...",
               "ServiceSettings.SiteURL": "https://chat.example.org"}
    on_mysql = {"SqlSettings": {"DriverName": "mysql", "DataSource": "mm:pw@tcp(localhost:3306)/mattermost"}}
    assert set(applicable(on_mysql, desired)) == {"ServiceSettings.SiteURL"}
    on_postgres = {"SqlSettings": {"DriverName": "postgres"}}
    assert set(applicable(on_postgres, desired)) == set(desired)
