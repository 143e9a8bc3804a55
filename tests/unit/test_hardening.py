"""The OS hardening as the deploy writes it: every file exactly, login.defs edited in place
(the shell run here on copies of Debian 12's and 13's lines), the way back, the state read
knowing every path, and nothing that would route or lock the operator out. (lynis' index on
real Debian 13 and 12: bench/security.py.)"""

import hashlib
import json
import re
import shutil
import subprocess

import pytest

from mmhelper.parts.common import key_values
from tasks import db_server, hardening, ssh_access
from tasks.common import HARDENING_PACKAGES, file_matches, packages
from tasks.settings import ROOT, load_settings
from tasks.state import managed_paths, query
from tests.unit.test_decisions import DEFAULTS

S = load_settings(DEFAULTS, "chat.example.org", environ={})
OFF = load_settings({**DEFAULTS, "security_hardening": False}, "chat.example.org", environ={})
FILES = hardening.files()


def settings_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_sshd_drop_in_exactly_and_read_before_the_deploys_own():
    assert settings_lines(FILES[hardening.SSHD_DROPIN]) == [
        "AllowTcpForwarding no", "AllowAgentForwarding no", "X11Forwarding no", "ClientAliveInterval 300",
        "ClientAliveCountMax 2", "TCPKeepAlive no", "LogLevel VERBOSE", "Compression no"]
    # sshd keeps the first value it reads: ours sorts before ssh_access's and cloud-init's 50- files
    dropin, access = hardening.SSHD_DROPIN.rsplit("/", 1), ssh_access.SSHD_DROPIN.rsplit("/", 1)
    assert dropin[0] == access[0] == "/etc/ssh/sshd_config.d"
    assert dropin[1] < access[1] and dropin[1] < "50-cloud-init.conf"
    assert dropin[1].endswith(".conf")  # sshd_config's Include reads *.conf only
    assert not hardening.SSHD_PREVIOUS.startswith(hardening.SSHD_DIR + "/")  # the backup is never read


def test_nothing_that_locks_the_operator_out():
    text = FILES[hardening.SSHD_DROPIN]
    for word in ("MaxAuthTries", "MaxSessions", "Port ", "AllowUsers", "AllowGroups", "PermitRootLogin",
                 "PasswordAuthentication"):
        assert word not in text, word
    assert set(hardening.LOGIN_DEFS_KEYS) == {"SHA_CRYPT_MIN_ROUNDS", "SHA_CRYPT_MAX_ROUNDS", "PASS_MIN_DAYS"}
    assert "apt-listbugs" not in packages(S)


def test_the_small_files_exactly():
    banner = ("Authorized access only. This system is private: activity is monitored and logged, and unauthorized use "
              "is prohibited and may be reported to law enforcement.\n")
    assert FILES[hardening.ISSUE] == FILES[hardening.ISSUE_NET] == banner
    assert settings_lines(FILES[hardening.MODPROBE]) == [
        "install usb-storage /bin/false", "install firewire-core /bin/false", "install firewire-ohci /bin/false",
        "install dccp /bin/false", "install sctp /bin/false", "install rds /bin/false", "install tipc /bin/false",
        "blacklist usb-storage", "blacklist firewire-core", "blacklist firewire-ohci"]
    assert settings_lines(FILES[hardening.COREDUMP]) == ["[Coredump]", "Storage=none", "ProcessSizeMax=0"]
    assert settings_lines(FILES[hardening.LIMITS]) == ["* hard core 0", "* soft core 0"]
    assert settings_lines(FILES[hardening.PROFILE]) == ["ulimit -c 0"]
    assert settings_lines(FILES[hardening.JAIL_LOCAL]) == []  # a comment only: the jails are in jail.d
    assert hardening.JAIL_LOCAL not in hardening.files(fail2ban=False)
    for path, text in FILES.items():
        assert text.endswith("\n") and "\n\n" not in text, path


def test_the_kernel_settings_exactly_and_never_forwarding():
    lines = settings_lines(FILES[hardening.SYSCTL_FILE])
    assert lines == [
        "dev.tty.ldisc_autoload = 0", "fs.protected_fifos = 2", "fs.protected_regular = 2", "fs.protected_symlinks = 1",
        "kernel.core_uses_pid = 1", "kernel.ctrl-alt-del = 0", "kernel.kptr_restrict = 2",
        "kernel.unprivileged_bpf_disabled = 1", "kernel.perf_event_paranoid = 3", "net.ipv4.conf.all.log_martians = 1",
        "net.ipv4.conf.all.rp_filter = 1", "net.ipv4.conf.all.send_redirects = 0",
        "net.ipv4.conf.default.accept_redirects = 0", "net.ipv4.conf.default.accept_source_route = 0",
        "net.ipv4.conf.default.log_martians = 1", "net.ipv6.conf.all.accept_redirects = 0",
        "net.ipv6.conf.default.accept_redirects = 0"]
    for path, text in FILES.items():
        assert "ip_forward" not in text, path
    assert not [key for key in hardening.SYSCTL if "forwarding" in key]


def test_the_sysctl_check_names_each_key_the_kernel_refuses_and_never_fails():
    script = hardening.sysctl_check_script()
    assert script.startswith(f"sysctl -p {hardening.SYSCTL_FILE} >/dev/null 2>&1; ") and script.endswith("; true")
    for key, value in hardening.SYSCTL.items():
        assert f'[ "$(sysctl -n {key} 2>/dev/null)" = "{value}" ] || echo {key}' in script


def test_the_way_back_removes_only_the_deploys_drop_ins():
    assert hardening.DROPINS == [
        "/etc/ssh/sshd_config.d/10-mattermost-hardening.conf", "/etc/modprobe.d/mattermost-hardening.conf",
        "/etc/systemd/coredump.conf.d/mattermost-hardening.conf", "/etc/security/limits.d/mattermost-hardening.conf",
        "/etc/profile.d/mattermost-hardening.sh", "/etc/sysctl.d/60-mattermost-hardening.conf"]
    # edited or shared files stay: login.defs' lines, the banner, the operator's jail.local
    for kept in (hardening.LOGIN_DEFS, hardening.ISSUE, hardening.ISSUE_NET, hardening.JAIL_LOCAL):
        assert kept not in hardening.DROPINS
    back = hardening.remove_sshd_dropin()
    assert back.index("sshd -t") < back.index("systemctl reload ssh") and "exit 1" in back
    assert f"mv -f {hardening.SSHD_PREVIOUS} {hardening.SSHD_DROPIN}" in back  # sshd -t refused: the file is back


def test_the_state_read_knows_every_file_on_both_roles():
    written = set(FILES) | {hardening.LOGIN_DEFS}
    assert written == set(hardening.PATHS)
    assert set(hardening.PATHS) <= set(managed_paths(S))
    assert json.loads(query(S))["file_keys"] == {"/etc/login.defs": list(hardening.LOGIN_DEFS_KEYS)}
    database = load_settings({**DEFAULTS, "mattermost_role": "database", "db_listen_address": "10.0.0.2",
                              "db_clients": ["10.0.0.3"]}, "db.example.org",
                             environ={"MATTERMOST_DB_PASSWORD": "a-long-enough-password"})
    asked = json.loads(db_server.query(database))
    assert set(hardening.PATHS) <= set(asked["paths"]) and asked["file_keys"] == hardening.query_keys()
    assert set(HARDENING_PACKAGES) <= set(packages(database))


def test_the_packages_follow_the_setting():
    assert HARDENING_PACKAGES == ["debsums", "apt-listchanges", "libpam-passwdqc"]
    assert set(HARDENING_PACKAGES) <= set(packages(S))
    assert not set(HARDENING_PACKAGES) & set(packages(OFF))  # the way back leaves them installed, never asks for them


def test_a_file_differs_on_content_owner_or_mode():
    text = FILES[hardening.MODPROBE]
    ok = {"type": "file", "owner": "root", "group": "root", "mode": 0o644,
          "sha256": hashlib.sha256(text.encode()).hexdigest()}
    assert file_matches(ok, text) == (True, True)
    assert file_matches(None, text) == (False, False)
    assert file_matches({**ok, "sha256": "0" * 64}, text) == (False, True)
    assert file_matches({**ok, "mode": 0o600}, text) == (True, False)


@pytest.mark.parametrize("now,wanted", [
    (None, hardening.LOGIN_DEFS_KEYS),  # no file: all three
    ({"SHA_CRYPT_MIN_ROUNDS": None, "SHA_CRYPT_MAX_ROUNDS": None, "PASS_MIN_DAYS": "0"}, hardening.LOGIN_DEFS_KEYS),
    ({"SHA_CRYPT_MIN_ROUNDS": "5000", "SHA_CRYPT_MAX_ROUNDS": "10000", "PASS_MIN_DAYS": "1"},
     {"SHA_CRYPT_MAX_ROUNDS": "5000"}),
    (dict(hardening.LOGIN_DEFS_KEYS), {}),
])
def test_login_defs_changes_only_what_differs(now, wanted):
    assert hardening.login_defs_changes(now) == wanted


BOOKWORM = """#
# /etc/login.defs
PASS_MAX_DAYS\t99999
PASS_MIN_DAYS\t0
PASS_WARN_AGE\t7
ENCRYPT_METHOD SHA512
#SHA_CRYPT_MIN_ROUNDS 5000
#SHA_CRYPT_MAX_ROUNDS 5000
"""
TRIXIE_WITHOUT_LAST_NEWLINE = "PASS_MAX_DAYS\t99999\nPASS_MIN_DAYS\t0\nPASS_MIN_DAYS\nENCRYPT_METHOD YESCRYPT"


@pytest.mark.skipif(not shutil.which("sh") or subprocess.run(["sed", "--version"], capture_output=True).returncode,
                    reason="needs sh and GNU sed, as Debian has them")
@pytest.mark.parametrize("original", [BOOKWORM, TRIXIE_WITHOUT_LAST_NEWLINE, ""])
def test_login_defs_is_edited_in_place_line_by_line(tmp_path, original):
    path = tmp_path / "login.defs"
    path.write_text(original)

    def apply() -> None:
        changes = hardening.login_defs_changes(key_values(str(path), list(hardening.LOGIN_DEFS_KEYS)))
        for key, value in changes.items():
            subprocess.run(["sh", "-c", hardening.login_defs_line(key, value, str(path))], check=True)

    apply()
    text = path.read_text()
    assert key_values(str(path), list(hardening.LOGIN_DEFS_KEYS)) == hardening.LOGIN_DEFS_KEYS
    for key, value in hardening.LOGIN_DEFS_KEYS.items():  # each line of the key replaced, or one appended
        assert re.findall(rf"^{key}\b.*$", text, re.M) == [f"{key}\t{value}"] * max(1, original.count(f"\n{key}")
                                                                                 + original.startswith(key))
    for line in original.splitlines():  # the rest as it was, comments too
        assert line.startswith(tuple(hardening.LOGIN_DEFS_KEYS)) or line in text.splitlines(), line
    assert text.endswith("\n")
    apply()
    assert path.read_text() == text  # a second run changes nothing


def test_sshd_settings_overridden_by_another_file_are_named():
    effective = "\n".join(f"{key.lower()} {value}" for key, value in hardening.SSHD.items())
    assert hardening.not_in_effect(effective) == []
    assert hardening.not_in_effect(effective.replace("x11forwarding no", "x11forwarding yes")
                                   .replace("loglevel VERBOSE", "loglevel INFO")) == ["X11Forwarding no",
                                                                                      "LogLevel VERBOSE"]
    assert hardening.not_in_effect("") == [f"{key} {value}" for key, value in hardening.SSHD.items()]


class Snapshot:
    """The run's state snapshot and pyinfra's host, as the operations see them."""

    def __init__(self, monkeypatch, paths: dict, file_keys: dict | None = None):
        self.noops: list[str] = []
        monkeypatch.setattr(hardening, "path_info", lambda path: paths.get(path))
        monkeypatch.setattr(hardening, "current", lambda: {"paths": paths, "file_keys": file_keys or {}})
        monkeypatch.setattr(hardening, "host", self)

    def noop(self, why: str) -> None:
        self.noops.append(why)


def commands(op, **kwargs) -> list[str]:
    return [str(c) for c in op._inner(**kwargs)]


def as_written(path: str) -> dict:
    return {"type": "file", "owner": "root", "group": "root", "mode": 0o644,
            "sha256": hashlib.sha256(FILES[path].encode()).hexdigest()}


def test_the_way_back_removes_what_is_there_and_checks_sshd(monkeypatch):
    Snapshot(monkeypatch, {hardening.MODPROBE: as_written(hardening.MODPROBE),
                           hardening.SYSCTL_FILE: as_written(hardening.SYSCTL_FILE),
                           hardening.SSHD_DROPIN: as_written(hardening.SSHD_DROPIN)})
    done = commands(hardening.dropins_removed)
    assert done == [f"rm -f {hardening.MODPROBE} {hardening.SYSCTL_FILE}", hardening.remove_sshd_dropin()]
    snapshot = Snapshot(monkeypatch, {})
    assert commands(hardening.dropins_removed) == [] and snapshot.noops == ["no hardening drop-ins of the deploy here"]


def test_sshd_is_checked_reloaded_and_proven_only_when_its_drop_in_changes(monkeypatch):
    snapshot = Snapshot(monkeypatch, {hardening.SSHD_DROPIN: as_written(hardening.SSHD_DROPIN)})
    assert commands(hardening.sshd_hardened, content=FILES[hardening.SSHD_DROPIN]) == []
    assert snapshot.noops == ["sshd runs with the hardening drop-in"]
    Snapshot(monkeypatch, {hardening.SSHD_DROPIN: {**as_written(hardening.SSHD_DROPIN), "sha256": "0" * 64}})
    done = commands(hardening.sshd_hardened, content=FILES[hardening.SSHD_DROPIN])
    test, reload = (next(i for i, c in enumerate(done) if c.startswith(word)) for word in ("sshd -t", "systemctl reload"))
    assert f"cp -p {hardening.SSHD_DROPIN} {hardening.SSHD_PREVIOUS}" in done[0]  # the previous file kept first
    assert hardening.RESTORE_SSHD in done[test] and "exit 1" in done[test]  # refused: put back, no reload
    assert test < reload
    proven = [c for c in hardening.sshd_hardened._inner(content=FILES[hardening.SSHD_DROPIN])
              if getattr(c, "function", None) is hardening.sshd_kept_if_login_works]
    assert len(proven) == 1


def test_login_defs_and_jail_local_are_left_alone_when_right_or_there(monkeypatch):
    snapshot = Snapshot(monkeypatch, {hardening.JAIL_LOCAL: {"type": "file", "sha256": "the operator's"}},
                        {hardening.LOGIN_DEFS: dict(hardening.LOGIN_DEFS_KEYS)})
    assert commands(hardening.login_defs_set) == []
    assert commands(hardening.jail_local_created, content=FILES[hardening.JAIL_LOCAL]) == []
    assert snapshot.noops == ["/etc/login.defs has the hardening's values", "/etc/fail2ban/jail.local is there (kept "
                                                                              "as it is)"]
    Snapshot(monkeypatch, {}, {hardening.LOGIN_DEFS: {**hardening.LOGIN_DEFS_KEYS, "PASS_MIN_DAYS": "0"}})
    assert commands(hardening.login_defs_set) == [hardening.login_defs_line("PASS_MIN_DAYS", "1")]
    assert len(commands(hardening.jail_local_created, content=FILES[hardening.JAIL_LOCAL])) == 3


def test_sysctl_is_applied_only_when_its_file_changed(monkeypatch):
    snapshot = Snapshot(monkeypatch, {})
    assert commands(hardening.sysctl_applied, changed=False) == [] and snapshot.noops
    [apply] = list(hardening.sysctl_applied._inner(changed=True))
    assert apply.function is hardening.sysctl_report


def test_the_benchmark_reads_lynis_index_and_each_tests_points():
    from bench.security import changed_tests, hardening_index, points_per_test

    assert hardening_index("report_version_major=1\nhardening_index=77\n") == 77 and hardening_index("") is None
    log = """2026-01-05 10:00:01 Performing test ID SSH-7408 (Check SSH specific defined options)
2026-01-05 10:00:01 Hardening: assigned maximum number of hardening points for this item (3). Currently having 10 points
2026-01-05 10:00:01 Hardening: assigned partial number of hardening points (1 of 3). Currently having 11 points (out of 15)
2026-01-05 10:00:02 Performing test ID DEB-0880 (Checking for fail2ban configuration file)
2026-01-05 10:00:02 Hardening: assigned partial number of hardening points (0 of 1). Currently having 11 points (out of 16)
2026-01-05 10:00:03 Performing test ID BANN-7126 (Check issue banner file contents)
"""
    before = points_per_test(log)
    assert before == {"SSH-7408": (4, 6), "DEB-0880": (0, 1)}
    after = {"SSH-7408": (6, 6), "DEB-0880": (0, 1), "BANN-7126": (2, 2)}
    assert changed_tests(before, after) == [["BANN-7126", "-", "2/2"], ["SSH-7408", "4/6", "6/6"]]


def test_make_diff_points_at_the_template_of_each_fixed_file():
    for path in (hardening.MODPROBE, hardening.COREDUMP, hardening.LIMITS, hardening.PROFILE, hardening.SYSCTL_FILE):
        template = hardening.as_template(path).split()[1]
        assert (ROOT / template).is_file(), template


def test_sshd_never_penalises_the_never_banned_addresses_where_it_penalises():
    """OpenSSH 9.8+ (Debian 13) refuses connections from an address after failed logins; the
    exemption takes the fail2ban never-ban list in sshd's form (host bits zero, else `sshd -t`
    refuses it: "invalid address argument", measured on Debian 13's sshd)."""
    assert hardening.penalty_exempt(["127.0.0.1/8", "::1", "172.18.0.1", "10.1.2.3/24"]) == \
        "127.0.0.0/8,::1,172.18.0.1,10.1.2.0/24"
    text = hardening.files(exempt=["127.0.0.1/8", "::1", "192.0.2.7"])[hardening.SSHD_DROPIN]
    assert settings_lines(text)[-1] == "PerSourcePenaltyExemptList 127.0.0.0/8,::1,192.0.2.7"
    assert "PerSourcePenalty" not in hardening.files()[hardening.SSHD_DROPIN]  # Debian 11 and 12's sshd refuses the keyword
    assert {"bullseye", "bookworm"} <= set(hardening.NO_PENALTIES_BEFORE) and "trixie" not in hardening.NO_PENALTIES_BEFORE
