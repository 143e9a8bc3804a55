"""The Debian release upgrade's plan: refusals with their reasons, PostgreSQL, disk, the
text an operator reads, and nothing to do once on Debian 13."""

from tasks.os_release import make_os_plan, plan_text

BOOKWORM = {"id": "debian", "version_id": "12", "codename": "bookworm"}
STATE = {
    "dpkg_audit": "", "held": [], "db_bytes": 300_000_000, "lock": None, "run": None,
    "sources": [{"file": "/etc/apt/sources.list", "uri": "http://deb.debian.org/debian", "suites": ["bookworm"],
                 "enabled": True, "debian": True},
                {"file": "/etc/apt/sources.list.d/vendor.list", "uri": "https://vendor.example/apt", "suites": ["./"],
                 "enabled": True, "debian": False}],
    "clusters": [{"version": 15, "name": "main", "port": 5432, "status": "online", "data": "/var/lib/postgresql/15/main"}],
    "free_bytes": {"/": 20_000_000_000, "/var": 20_000_000_000},
    "simulation": {"upgraded": 400, "new": 90, "removed": ["libfoo1"], "postgresql": ["postgresql-17"],
                   "download": 300_000_000, "more_disk": 600_000_000, "freed": 0},
}


def plan(**changes):
    os_info = {**BOOKWORM, **changes.pop("os", {})}
    return make_os_plan("chat", os_info, {**STATE, **changes}, True)


def test_a_clean_debian_12_is_safe_and_the_plan_says_everything():
    p = plan()
    assert p.safe and (p.current, p.target, p.postgresql) == ("bookworm", "trixie", (15, 17))
    text = plan_text(p)
    for part in ("Debian 12 (bookworm) -> 13 (trixie)", "third-party sources set aside: /etc/apt/sources.list.d/vendor.list",
                 "400 upgraded, 90 new, 1 removed (libfoo1)", "PostgreSQL 15 -> 17", "cannot be undone automatically",
                 "safe to start: yes", "downtime:"):
        assert part in text, part


def test_refusals_each_with_what_to_do():
    assert "apt-mark unhold mmdeploy-testpkg" in plan(held=["mmdeploy-testpkg"]).refusals[0]
    assert "dpkg --configure -a" in plan(dpkg_audit="The following packages are only half configured").refusals[0]
    assert "not enough free disk" in plan(free_bytes={"/": 500_000_000}).refusals[0]
    assert "not healthy" in make_os_plan("chat", BOOKWORM, STATE, False).refusals[0]
    removes_server = {**STATE["simulation"], "removed": ["postgresql-15"]}
    assert "would remove postgresql-15 before its cluster is upgraded" in plan(simulation=removes_server).refusals[0]
    assert "go from Debian 11 (bullseye) to 12" in plan(os={"codename": "buster", "version_id": "10"}).refusals[0]


def test_debian_11_goes_to_12_first_then_13():
    eleven = plan(os={"id": "debian", "codename": "bullseye", "version_id": "11"})
    assert (eleven.current, eleven.target) == ("bullseye", "bookworm") and eleven.safe
    text = plan_text(eleven)
    assert "Debian 11 (bullseye) -> 12 (bookworm)" in text
    assert "then: Debian 13 (trixie) in the same `make os-upgrade`, one release at a time" in text
    assert "cannot be downgraded to Debian 11" in text


def test_nothing_to_do_on_debian_13_and_an_unfinished_run_continues():
    done = plan(os={"codename": "trixie", "version_id": "13"}, simulation=None)
    assert done.nothing_to_do and plan_text(done) == "chat: already Debian 13 (trixie): nothing to do"
    resumed = plan(os={"codename": "trixie", "version_id": "13"}, simulation=None,
                   run={"target": "trixie", "done": ["backup", "sources", "packages"], "started_text": "today"})
    assert not resumed.nothing_to_do and resumed.safe and resumed.done == ["backup", "sources", "packages"]
    assert "an unfinished release upgrade (started today) continues" in plan_text(resumed)


def test_the_downtime_names_postgresqls_restart_during_the_packages_only_with_a_local_cluster():
    # measured (make bench-bullseye): the package upgrade restarts PostgreSQL and Mattermost, bound to
    # it by its unit, stops with it; a server whose database is elsewhere has no such stop
    local = plan().outage
    assert "reboot" in local and "the packages restart PostgreSQL" in local and "cluster upgrade" in local
    remote = plan(clusters=[], simulation={**STATE["simulation"], "postgresql": []}).outage
    assert "reboot" in remote and "PostgreSQL" not in remote
