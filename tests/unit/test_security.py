"""Brute force stopped at the door, as the deploy writes it: the settings' checks, who is
never banned, the fail2ban jails, nginx's limit on the sign-in routes, Mattermost's limiter
keyed on the real address. (Their behaviour against real nginx, fail2ban and Mattermost is
tests/e2e/test_security.py.)"""

import re

import pytest

from tasks import security
from tasks.common import render
from tasks.config import desired_config
from tasks.settings import SettingsError, load_settings
from tests.unit.test_decisions import DEFAULTS

S = load_settings(DEFAULTS, "chat.example.org", environ={})


def site(s, never_ban):
    return render("etc/nginx/sites-available/mattermost.conf.j2", s=s, certificate="/c", certificate_key="/k",
                  webroot="/w", http2_on=True, never_ban=never_ban)


@pytest.mark.parametrize("key,value,words", [
    ("security_login_rate", "10 per minute", "nginx's rate form"),
    ("security_login_burst", -1, "security_login_burst must be"),
    ("fail2ban_ban_time", 0, "fail2ban_ban_time must be a number of seconds"),
    ("firewall_never_ban", ["203.0.113.7", "office"], "'office' is not an IP address or network"),
    ("security_scan_address", "no spaces allowed", "is not a host name"),
])
def test_bad_settings_are_refused_by_name(key, value, words):
    with pytest.raises(SettingsError) as e:
        load_settings({**DEFAULTS, key: value}, "chat.example.org", environ={})
    assert words in str(e.value) and "(nothing was changed on the server)" in str(e.value)


def test_never_banned_loopback_the_workstation_and_the_listed():
    s = load_settings({**DEFAULTS, "firewall_never_ban": ["198.51.100.0/24", "2001:db8::/48", "203.0.113.9/32"]},
                      "chat.example.org", environ={})
    assert security.never_ban(s, {"ssh_client": "203.0.113.9"}) == [
        "127.0.0.1/8", "::1", "203.0.113.9", "198.51.100.0/24", "2001:db8::/48"]
    assert security.never_ban(S, {"ssh_client": None}) == ["127.0.0.1/8", "::1"]
    assert security.never_ban(S, {"ssh_client": "not-an-address"}) == ["127.0.0.1/8", "::1"]


def test_the_jails_ban_every_port_in_fail2bans_own_table_and_expire():
    jail = render("etc/fail2ban/jail.d/mattermost-deploy.conf.j2", s=S, never_ban=["127.0.0.1/8", "::1", "192.0.2.4"],
                  mattermost=True)
    assert "banaction = nftables-allports" in jail and "ignoreip = 127.0.0.1/8 ::1 192.0.2.4" in jail
    assert "bantime = 3600" in jail and "findtime = 600" in jail and "maxretry = 5" in jail
    assert re.findall(r"^\[(\S+)\]$", jail, re.M) == ["DEFAULT", "sshd", "mattermost-login", "nginx-limit-req"]
    assert "logpath = /var/log/mattermost/mattermost.log" in jail and "backend = systemd" in jail
    database_server = render("etc/fail2ban/jail.d/mattermost-deploy.conf.j2", s=S, never_ban=[], mattermost=False)
    assert re.findall(r"^\[(\S+)\]$", database_server, re.M) == ["DEFAULT", "sshd"]


def test_the_filter_matches_mattermosts_own_line_of_10_3_and_11_4():
    """The lines the real 10.3 and 11.4 wrote for a wrong password (X-Real-IP trusted)."""
    conf = render("etc/fail2ban/filter.d/mattermost-login.conf.j2")
    failregex = re.search(r"^failregex = (.+)$", conf, re.M).group(1).replace("<ADDR>", r"(?P<addr>[0-9a-f.:]+)")
    for caller in ("app/authentication.go:289", "app/authentication.go:432"):
        line = ('{"timestamp":"2026-12-04 11:05:37.788 Z","level":"info","msg":"A user tried to sign in, which matched '
                'a Mattermost account, but the password was incorrect.","caller":"' + caller + '","path":'
                '"/api/v4/users/login","request_id":"efkis7k44pgszgpzx8tbwrr3no","ip_addr":"203.0.113.7","user_id":"",'
                '"method":"POST","username":"alice"}')
        assert re.search(failregex, line).group("addr") == "203.0.113.7"
    assert not re.search(failregex, '{"level":"info","msg":"Server is listening on 127.0.0.1:8065","ip_addr":"1.2.3.4"}')


def test_nginx_limits_the_sign_in_routes_except_for_the_never_banned():
    text = site(S, ["127.0.0.1/8", "::1", "192.0.2.4"])
    assert "limit_req_zone $mattermost_login_key zone=mattermost_login:10m rate=10r/m;" in text
    assert "limit_req zone=mattermost_login burst=5 nodelay;" in text and "limit_req_status 429;" in text
    assert "    192.0.2.4 0;" in text and "    default 1;" in text
    route = re.search(r"location ~ (\S+) \{\n        limit_req", text).group(1)
    for path in ("/api/v4/users/login", "/api/v4/users/password/reset/send", "/api/v4/users/login/switch"):
        assert re.match(route.replace("$", "\\Z"), path), path
    assert not re.match(route.replace("$", "\\Z"), "/api/v4/users/me")
    # the route carries the real address for Mattermost (its limiter, its log line)
    block = text.split(route, 1)[1].split("}", 1)[0]
    assert "proxy_set_header X-Real-IP $remote_addr;" in block
    off = load_settings({**DEFAULTS, "security_login_rate": None}, "chat.example.org", environ={})
    assert "limit_req" not in site(off, [])


def test_mattermosts_limiter_keys_on_the_real_address_behind_nginx():
    owned = desired_config(S)
    assert owned["ServiceSettings.TrustedProxyIPHeader"] == ["X-Real-IP"]
    assert owned["ServiceSettings.ListenAddress"].startswith("127.0.0.1:")  # only nginx can send the header
    assert (owned["RateLimitSettings.Enable"], owned["RateLimitSettings.PerSec"], owned["RateLimitSettings.MaxBurst"],
            owned["RateLimitSettings.VaryByRemoteAddr"], owned["RateLimitSettings.VaryByUser"]) == (True, 10, 100, True,
                                                                                                     True)


def test_what_should_answer_from_outside():
    assert security.open_from_outside(S) == {22: "SSH", 80: "nginx (redirect, ACME)", 443: "nginx",
                                             8443: "Mattermost Calls (TCP fallback)"}


def test_stopping_nftables_removes_only_the_deploys_table():
    """Debian's unit flushes the whole ruleset on stop (a 12 -> 13 upgrade restarts it): the
    drop-in replaces that stop with deleting this deploy's table, keeping fail2ban's bans."""
    from tasks import firewall
    lines = firewall.STOP_ONLY_OURS.splitlines()
    assert lines[-2:] == ["ExecStop=", "ExecStop=-/usr/sbin/nft delete table inet mattermost_deploy"]
    assert "flush" not in "\n".join(line for line in lines if not line.startswith("#"))
    assert firewall.STOP_DROPIN.startswith("/etc/systemd/system/nftables.service.d/")
