"""Retention as a database job (Team Edition has no retention policies).
"""

import contextlib
import json
import os
import time

from mmhelper.parts.pg import psql_as_postgres
from mmhelper.parts.rclone import delete as delete_objects
from mmhelper.steps.backup import files_driver

RETENTION_TABLES = {  # table -> column holding the post id, for rows that belong to deleted posts
    "reactions": "postid", "threadmemberships": "postid", "threads": "postid", "fileinfo": "postid",
}


def retention(spec):
    """Team Edition has no retention policies; Mattermost's advice is a database script.
    Counts (dry run) or deletes posts older than N days with their files and reactions."""
    days, apply = int(spec["days"]), bool(spec.get("apply"))
    cutoff = int((time.time() - days * 86400) * 1000)
    db = spec["db"]
    tables = set(psql_as_postgres("SELECT tablename FROM pg_tables WHERE schemaname = 'public';", db).stdout.split())
    old = f"SELECT id FROM posts WHERE createat < {cutoff}"
    posts = int(psql_as_postgres(f"SELECT count(*) FROM ({old}) o;", db).stdout.strip() or 0)
    files = []
    if "fileinfo" in tables:
        out = psql_as_postgres(f"SELECT path FROM fileinfo WHERE postid IN ({old});", db).stdout
        files = [line for line in out.splitlines() if line]
    print(json.dumps({"cutoff": cutoff, "days": days, "posts": posts, "files": len(files), "applied": apply}))
    if not apply or not posts:
        return
    sql = "BEGIN;\n" + "".join(f"DELETE FROM {t} WHERE {col} IN ({old});\n" for t, col in RETENTION_TABLES.items()
                               if t in tables) + f"DELETE FROM posts WHERE createat < {cutoff};\nCOMMIT;\n"
    psql_as_postgres(sql, db)
    if files_driver(spec.get("config_file")) == "amazons3" and spec.get("files"):
        delete_objects(spec["files"], files)  # the files are objects in the bucket
        return
    data_dir = os.path.realpath(spec["data_dir"])
    for rel in files:
        path = os.path.realpath(os.path.join(data_dir, rel))
        if path.startswith(data_dir + "/"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
