"""Backups: data snapshots that never share a file with the live folder."""


def test_data_snapshot_never_shares_a_file_with_the_live_folder(mmhelper, tmp_path):
    import os

    live = tmp_path / "live"
    (live / "users" / "u1").mkdir(parents=True)
    (live / "users" / "u1" / "profile.png").write_bytes(b"old face")
    (live / "report.txt").write_text("report")
    first = mmhelper.snapshot_data(str(live), str(tmp_path / "b1" / "data"))
    assert first == {"copied": 2, "linked": 0}
    for rel in ("users/u1/profile.png", "report.txt"):
        assert os.stat(live / rel).st_ino != os.stat(tmp_path / "b1" / "data" / rel).st_ino
    # Mattermost rewrites a profile image in place (O_TRUNC): the backup keeps the old bytes
    with open(live / "users" / "u1" / "profile.png", "r+b") as f:
        f.truncate(0)
        f.write(b"new face")
    os.utime(live / "users" / "u1" / "profile.png", ns=(1, 1))
    assert (tmp_path / "b1" / "data" / "users" / "u1" / "profile.png").read_bytes() == b"old face"
    # the next backup links what did not change to the previous BACKUP, copies the rest
    second = mmhelper.snapshot_data(str(live), str(tmp_path / "b2" / "data"), str(tmp_path / "b1" / "data"))
    assert second == {"copied": 1, "linked": 1}
    assert os.stat(tmp_path / "b2" / "data" / "report.txt").st_ino == os.stat(tmp_path / "b1" / "data" / "report.txt").st_ino
    assert (tmp_path / "b2" / "data" / "users" / "u1" / "profile.png").read_bytes() == b"new face"


def fake_runuser(tmp_path, monkeypatch, script):
    """A `runuser` first on PATH: `runuser -u postgres -- <program> args` runs the script with
    the program's name and arguments (so the pipes around pg_dump and pg_restore are tested
    without PostgreSQL; the real ones run in the end-to-end tests)."""
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "runuser").write_text("#!/bin/sh\nshift 3\n" + script)
    (bin_dir / "runuser").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


def test_the_dump_is_pg_dump_uncompressed_through_gzip_rsyncable(mmhelper, tmp_path, monkeypatch):
    import gzip
    import os

    fake_runuser(tmp_path, monkeypatch, 'echo "$@" >&2; printf "PGDMP archive of %s" "$5"\n')
    dest = tmp_path / mmhelper.DUMP
    mmhelper.pg_dump("mattermost", str(dest))
    assert gzip.decompress(dest.read_bytes()) == b"PGDMP archive of mattermost"
    assert os.stat(dest).st_mode & 0o777 == 0o600
    assert mmhelper.dump_in(str(tmp_path)) == str(dest)


def test_a_failed_pg_dump_fails_the_backup_although_gzip_succeeded(mmhelper, tmp_path, monkeypatch):
    import pytest

    fake_runuser(tmp_path, monkeypatch, 'printf "half"; echo "pg_dump: error: connection refused" >&2; exit 1\n')
    with pytest.raises(mmhelper.Failure, match="pg_dump of mattermost failed: pg_dump: error: connection refused"):
        mmhelper.pg_dump("mattermost", str(tmp_path / mmhelper.DUMP))


def test_restore_reads_both_dump_forms_and_reports_pg_restore_errors(mmhelper, tmp_path, monkeypatch):
    import gzip

    import pytest

    got = tmp_path / "restored"
    fake_runuser(tmp_path, monkeypatch, f'[ "$1" = pg_restore ] || exit 9\n'
                                        f'if [ "$6" = broken ]; then echo "pg_restore: error: bad" >&2; exit 1; fi\n'
                                        f'cat > {got}\n')
    new = tmp_path / "new" / "database.dump.gz"
    new.parent.mkdir()
    new.write_bytes(gzip.compress(b"PGDMP new"))
    old = tmp_path / "old" / "database.dump"  # backups made before the gzip --rsyncable dump
    old.parent.mkdir()
    old.write_bytes(b"PGDMP old")
    for folder, content in (("new", b"PGDMP new"), ("old", b"PGDMP old")):
        mmhelper.pg_restore(mmhelper.dump_in(str(tmp_path / folder)), "mattermost", "mmuser")
        assert got.read_bytes() == content
    assert mmhelper.dump_in(str(tmp_path)) is None
    with pytest.raises(mmhelper.Failure, match="pg_restore failed: pg_restore: error: bad"):
        mmhelper.pg_restore(str(new), "broken", "mmuser")
    (tmp_path / "corrupt.gz").write_bytes(b"not gzip at all")
    with pytest.raises(mmhelper.Failure, match="the dump .*corrupt.gz does not decompress: gzip: stdin: not in gzip"):
        mmhelper.pg_restore(str(tmp_path / "corrupt.gz"), "mattermost", "mmuser")


def test_a_pg_dump_that_writes_much_to_stderr_does_not_stall_the_pipe(mmhelper, tmp_path, monkeypatch):
    import signal

    import pytest

    # 200 KB of warnings: more than a pipe holds, so stderr must be drained while the dump runs
    fake_runuser(tmp_path, monkeypatch, 'head -c 200000 /dev/zero | tr "\\0" w >&2; echo "pg_dump: error: last" >&2; '
                                        'printf "PGDMP"; exit 1\n')
    def stalled(*_):
        raise TimeoutError("the dump pipe stalled")

    previous = signal.signal(signal.SIGALRM, stalled)  # a stalled pipe fails the test, not the suite
    signal.alarm(60)
    try:
        with pytest.raises(mmhelper.Failure, match="pg_dump of mattermost failed: .*pg_dump: error: last$"):
            mmhelper.pg_dump("mattermost", str(tmp_path / mmhelper.DUMP))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
