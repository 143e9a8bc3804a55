"""The release upgrade's readings of the server: apt sources in both formats, PostgreSQL
clusters, apt's sizes."""

ONE_LINE = """deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian-security bookworm-security main  # security
# deb http://example.org/old ./
deb [trusted=yes] http://mmdeploy-upstream:8080/apt ./
"""
DEB822 = """Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: https://packages.example.com/debian
Suites: stable
Enabled: no
"""


def test_sources_of_both_formats_and_who_runs_them(mmhelper):
    entries = mmhelper.parse_sources({"/etc/apt/sources.list": ONE_LINE, "/etc/apt/sources.list.d/x.sources": DEB822})
    seen = [(e["uri"], e["suites"], e["enabled"], e["debian"]) for e in entries]
    assert seen == [
        ("http://deb.debian.org/debian", ["bookworm"], True, True),
        ("http://deb.debian.org/debian-security", ["bookworm-security"], True, True),
        ("http://mmdeploy-upstream:8080/apt", ["./"], True, False),
        ("http://deb.debian.org/debian", ["trixie", "trixie-updates"], True, True),
        ("https://packages.example.com/debian", ["stable"], False, False),
    ]


def test_clusters_as_pg_lsclusters_prints_them(mmhelper):
    text = ("15  main    5433 down   postgres /var/lib/postgresql/15/main /var/log/postgresql/postgresql-15-main.log\n"
            "17  main    5432 online postgres /var/lib/postgresql/17/main /var/log/postgresql/postgresql-17-main.log\n")
    assert mmhelper.parse_clusters(text) == [
        {"version": 15, "name": "main", "port": 5433, "status": "down", "data": "/var/lib/postgresql/15/main"},
        {"version": 17, "name": "main", "port": 5432, "status": "online", "data": "/var/lib/postgresql/17/main"}]


def test_apt_sizes(mmhelper):
    text = ("412 upgraded, 96 newly installed, 12 to remove and 0 not upgraded.\nNeed to get 301 MB of archives.\n"
            "After this operation, 1,204 kB of additional disk space will be used.\nDo you want to continue? [Y/n] Abort.\n")
    assert mmhelper.parse_apt_sizes(text) == {"download": 301_000_000, "more_disk": 1_204_000, "freed": 0}
    assert mmhelper.parse_apt_sizes("After this operation, 3 MB disk space will be freed.")["freed"] == 3_000_000
    assert "trixie-security" in mmhelper.sources_for("trixie") and "Signed-By:" in mmhelper.sources_for("trixie")
