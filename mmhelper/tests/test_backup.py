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
