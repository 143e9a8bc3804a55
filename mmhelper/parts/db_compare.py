"""What arrived in PostgreSQL, compared with what left MySQL: for every table, the row count
and a digest of its rows after the types are made comparable (MySQL's tinyint(1) and
PostgreSQL's boolean both as 0/1, JSON by its meaning, bytes as bytes, text as its UTF-8
bytes). The digest is the sum of each row's SHA-256 modulo 2^256: independent of row order
(the two servers sort text differently), sensitive to any changed, lost or doubled row.
"""

import hashlib
import json
import os
import subprocess
import tempfile
from decimal import Decimal, InvalidOperation

from mmhelper.parts import mysql
from mmhelper.parts.common import Failure
from mmhelper.parts.pg import files_named, psql_as_postgres

MISSING = "-"  # NULL in the digest queries (a hex string never is "-")
MOD = 1 << 256

# The comparable form of a column, by its PostgreSQL type (the schema Mattermost made).
KINDS = {
    "boolean": "bool", "json": "json", "jsonb": "json", "bytea": "bytes",
    "smallint": "number", "integer": "number", "bigint": "number", "numeric": "number",
    "real": "float", "double precision": "float", "character": "char",
}


def pg_columns(database):
    """{table: [(column, data type)]} of the public tables, in table order."""
    out = psql_as_postgres("SELECT table_name, column_name, data_type FROM information_schema.columns WHERE "
                           "table_schema = 'public' ORDER BY table_name, ordinal_position;", database).stdout
    found = {}
    for line in out.splitlines():
        table, column, data_type = line.split("|", 2)
        found.setdefault(table, []).append((column, data_type))
    return found


def pg_tables(database):
    out = psql_as_postgres("SELECT tablename FROM pg_tables WHERE schemaname = 'public';", database).stdout
    return sorted(out.split())


def _pg_expression(column, kind):
    c = '"' + column + '"'
    if kind == "bool":
        text = f"CASE WHEN {c} IS NULL THEN NULL WHEN {c} THEN '1' ELSE '0' END"
    elif kind == "bytes":
        return f"COALESCE(encode({c}, 'hex'), '{MISSING}')"
    else:
        text = f"{c}::text"
    return f"COALESCE(encode(convert_to({text}, 'UTF8'), 'hex'), '{MISSING}')"


def _mysql_expression(column, kind):
    c = "`" + column + "`"
    if kind == "bool":
        return f"IFNULL(HEX(IF({c} IS NULL, NULL, IF({c} <> 0, '1', '0'))), '{MISSING}')"
    if kind == "bytes":
        return f"IFNULL(LOWER(HEX({c})), '{MISSING}')"
    if kind in ("number", "float"):
        return f"IFNULL(HEX(CAST({c} AS CHAR)), '{MISSING}')"
    return f"IFNULL(HEX(CONVERT({c} USING utf8mb4)), '{MISSING}')"


def comparable(value, kind):
    """One column's value (hex from either side, or MISSING) in its comparable form."""
    if value == MISSING:
        return None
    raw = bytes.fromhex(value)
    if kind == "bytes":
        return raw.hex()
    text = raw.decode("utf-8", errors="surrogateescape")
    if kind == "json":
        try:
            return json.dumps(json.loads(text), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        except ValueError:
            return "not json: " + text
    if kind == "number":
        try:
            return str(Decimal(text).normalize())
        except InvalidOperation:
            return text
    if kind == "float":
        try:
            return repr(float(text))
        except ValueError:
            return text
    if kind == "char":
        return text.rstrip(" ")
    return text


def digest_rows(rows, kinds):
    """(row count, digest) of rows given as lists of hex values."""
    total, count = 0, 0
    for row in rows:
        if len(row) != len(kinds):
            raise Failure(f"a digest query returned {len(row)} columns, {len(kinds)} expected")
        values = [comparable(v, k) for v, k in zip(row, kinds)]  # lengths checked above (3.9: no strict=)
        line = json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode("utf-8", errors="surrogateescape")
        total = (total + int.from_bytes(hashlib.sha256(line).digest(), "big")) % MOD
        count += 1
    return count, f"{total:064x}"


def table_plans(database, ds, tables):
    """Per table: MySQL's spelling of its name, and the columns both sides have with their
    comparable kinds (pgloader folds MySQL's CamelCase names to lower case); and, where the
    sides differ, which columns."""
    pg = pg_columns(database)
    my = {}
    for name, column, _, _ in mysql.query(ds, "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM "
                                              "information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                                              "ORDER BY TABLE_NAME, ORDINAL_POSITION;"):
        entry = my.setdefault(name.lower(), {"name": name, "columns": {}})
        entry["columns"][column.lower()] = column
    plans = {}
    for table in tables:
        mine = my.get(table, {"name": table, "columns": {}})
        columns = pg.get(table, [])
        plans[table] = {
            "mysql_name": mine["name"],
            "kinds": [(name, mine["columns"][name], KINDS.get(data_type, "text"))
                      for name, data_type in columns if name in mine["columns"]],
            "only_in_postgresql": [name for name, _ in columns if name not in mine["columns"]],
            "only_in_mysql": sorted(set(mine["columns"]) - {name for name, _ in columns}),
        }
    return plans


MARK = "="  # the line before each table's rows in the batched reads (never hex, never "-")


def _digests(lines, plans):
    """Per table (count, digest) from one stream: a MARK line with the table's name, then its rows."""
    out, table, batch = {}, None, []

    def flush():
        if table is not None:
            out[table] = digest_rows(batch, [k for _, _, k in plans[table]["kinds"]])

    for line in lines:
        if line.startswith(MARK):
            flush()
            table, batch = line[1:].rstrip("\n"), []
        else:
            batch.append(line.rstrip("\n").split("\t"))
    flush()
    return out


def pg_digests(database, plans):
    """Every table's (rows, digest) in PostgreSQL, read in one psql session."""
    sql = []
    for table, plan in plans.items():
        select = ", ".join(_pg_expression(name, kind) for name, _, kind in plan["kinds"]) or "1"
        sql.append(f"COPY (SELECT '{MARK}{table}') TO STDOUT; COPY (SELECT {select} FROM \"{table}\") TO STDOUT;")
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                                 "-d", database], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
        proc.stdin.write("\n".join(sql) + "\n")
        proc.stdin.close()
        try:
            result = _digests(proc.stdout, plans)
        finally:
            proc.stdout.close()
            status = proc.wait()
        if status != 0:
            err.seek(0)
            raise Failure(f"reading the tables from PostgreSQL failed: {err.read().decode(errors='replace')[-300:]}")
    return result


def mysql_digests(ds, plans):
    """Every table's (rows, digest) in MySQL, read in one client session."""
    sql = []
    for table, plan in plans.items():
        select = ", ".join(_mysql_expression(name, kind) for _, name, kind in plan["kinds"]) or "1"
        sql.append(f"SELECT '{MARK}{table}'; SELECT {select} FROM `{plan['mysql_name']}`;")
    with mysql.rows_of(ds, " ".join(sql)) as rows:
        return _digests(("\t".join(row) for row in rows), plans)


def compare(ds, database, tables):
    """{table: {"mysql": [rows, digest], "postgresql": [rows, digest], "same": bool, ...}}."""
    plans = table_plans(database, ds, tables)
    mine, theirs = mysql_digests(ds, plans), pg_digests(database, plans)
    report = {}
    for table, plan in plans.items():
        entry = {"mysql": list(mine[table]), "postgresql": list(theirs[table])}
        entry["same"] = entry["mysql"] == entry["postgresql"] and not plan["only_in_postgresql"] \
            and not plan["only_in_mysql"]
        if plan["only_in_postgresql"] or plan["only_in_mysql"]:
            entry["columns"] = {"only_in_postgresql": plan["only_in_postgresql"], "only_in_mysql": plan["only_in_mysql"]}
        report[table] = entry
    return report


def differences(report):
    """One sentence per table whose copy does not match."""
    out = []
    for table, entry in sorted(report.items()):
        if entry["same"]:
            continue
        (my_rows, _), (pg_rows, _) = entry["mysql"], entry["postgresql"]
        if my_rows != pg_rows:
            out.append(f"{table}: {my_rows} rows in MySQL, {pg_rows} in PostgreSQL")
        elif entry.get("columns"):
            out.append(f"{table}: columns differ {entry['columns']}")
        else:
            out.append(f"{table}: same {my_rows} rows, different contents")
    return out


def schema_fingerprint(database, exclude=()):
    """The schema as Mattermost made it: columns and their types, indexes and constraints
    (of every table but `exclude`, the plugins' tables pgloader makes). pgloader must load
    rows into it, not change it."""
    skip = ", ".join(["''"] + ["'" + t.lower().replace("'", "''") + "'" for t in exclude])
    sql = ("SELECT 'c ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || "
           "COALESCE(column_default, '') FROM information_schema.columns WHERE table_schema = 'public' "
           f"AND table_name NOT IN ({skip}) UNION ALL "
           f"SELECT 'i ' || indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename NOT IN ({skip}) UNION ALL "
           "SELECT 'k ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint "
           f"WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text NOT IN ({skip}) ORDER BY 1;")
    return hashlib.sha256(psql_as_postgres(sql, database).stdout.encode()).hexdigest()


def missing_files(database, data_dir):
    """Uploads the database refers to (live FileInfo rows) that are not in the local file
    store with the recorded size, and the thumbnails and previews it names that are not
    there: ({"uploads": [...], "thumbnails": [...]}). Mattermost makes thumbnails and
    previews in the background and not for every image: a missing one is a warning."""
    uploads, extras = files_named(database)
    found = {"uploads": [], "thumbnails": []}
    for path, size in uploads.items():
        full = os.path.join(data_dir, path)
        if not os.path.isfile(full) or (size is not None and os.path.getsize(full) != size):
            found["uploads"].append(path)
    found["thumbnails"] = [p for p in extras if not os.path.isfile(os.path.join(data_dir, p))]
    return found
