"""Checks before each hop of an upgrade: what Mattermost's own upgrade notes and source say a
version changes under its users' feet, as rules a machine evaluates against the server as it
is (the state read's `upgrade_facts`). Each rule names its source: the changelog or notes of
that version, or the file and constant in Mattermost's source (the Go module of the version,
`$(go env GOMODCACHE)/github.com/mattermost/mattermost/server/v8@<version>/`), measured on the
real binaries built here (../shared/reference/upgrade-notes.md).

A finding is "refuse" (the hop does not start; the operator may accept it by its id in
`mattermost_upgrade_accept`, and nothing else skips a check) or "warn" (said, the hop runs).
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.version import Version

from tasks.versions import Decision

# Team Edition without a licence: (soft, hard) active accounts, from the version on.
# server/channels/app/limits.go: 10.3 maxUsersLimit = 5_000, maxUsersHardLimit = 11_000
# (isHardUserLimitExceeded: count > hard); 11.4 200 and 250 (isAtUserLimit: count >= hard).
# The count leaves out bots and deactivated accounts (UserCountOptions{}, public/model/user_count.go).
USER_LIMITS = [("10.0.0", 5_000, 11_000, "server/channels/app/limits.go of 10.3: maxUsersLimit = 5_000, "
                                         "maxUsersHardLimit = 11_000"),
               ("11.0.0", 200, 250, "server/channels/app/limits.go of 11.4: maxUsersLimit = 200, "
                                    "maxUsersHardLimit = 250; v11 changelog: \"lowered to final threshold of 250\"")]
# The oldest PostgreSQL the version starts on (server/channels/store/sqlstore/store.go,
# minimumRequiredPostgresVersion); below it the server stops at start.
POSTGRES_MINIMUM = [("10.0.0", 11, "server/channels/store/sqlstore/store.go of 10.3: minimumRequiredPostgresVersion "
                                   "= 110000"),
                    ("11.0.0", 14, "server/channels/store/sqlstore/store.go of 11.4: minimumRequiredPostgresVersion "
                                   "= 140000; v11 changelog: PostgreSQL 14 minimum")]
# Settings the version no longer has (config.json as 10.3's and 11.4's config_generator write
# it): a server that changed one from its default loses what it did.
REMOVED_SETTINGS = {"11.0.0": {
    "BleveSettings.EnableIndexing": False, "BleveSettings.EnableSearching": False,
    "BleveSettings.EnableAutocomplete": False, "BleveSettings.IndexDir": "", "BleveSettings.BatchSize": 10000,
    "ClusterSettings.EnableExperimentalGossipEncryption": False, "ExperimentalSettings.ClientSideCertCheck": "secondary",
    "LogSettings.VerboseDiagnostics": False, "ServiceSettings.EnableOpenTracing": False,
    "NotificationLogSettings.EnableFile": True, "NotificationLogSettings.FileLevel": "INFO",
    "NotificationLogSettings.FileLocation": "", "NotificationLogSettings.EnableConsole": True,
    "NotificationLogSettings.ConsoleLevel": "INFO", "NotificationLogSettings.ConsoleJson": True,
    "NotificationLogSettings.FileJson": True, "NotificationLogSettings.EnableColor": False}}
# Pairs Mattermost's important upgrade notes name as not to upgrade between: (from at least,
# within the line below, to at most). The 10.11 line's later patches carry what 11.x up to
# 11.7.2 lacks; a server already on 11.x is not on that line.
AVOIDED_PAIRS = [("10.11.17", "11.0.0", "11.7.2", "Mattermost's important upgrade notes (v11): do not upgrade from "
                                                  "10.11.17 or later to 11.7.2 or earlier")]
# Plugins the version no longer runs on Team Edition.
DROPPED_PLUGINS = {"11.0.0": {"playbooks": "Playbooks (v11 changelog: deprecated in Team Edition; users met it "
                                           "refusing to start without a licence from 10.5.6, mattermost/mattermost"
                                           "#31167, #30904)"}}


@dataclass(frozen=True)
class Finding:
    id: str  # what `mattermost_upgrade_accept` names to go ahead anyway
    level: str  # "refuse" or "warn"
    text: str  # what happens, in the operator's words
    source: str  # where the rule comes from
    accepted: bool = False

    @property
    def refuses(self) -> bool:
        return self.level == "refuse" and not self.accepted

    def line(self) -> str:
        mark = {"refuse": "REFUSED" if not self.accepted else "ACCEPTED", "warn": "note"}[self.level]
        return f"{mark} [{self.id}]: {self.text} (source: {self.source})"


def _crosses(old: str, new: str, since: str) -> bool:
    return Version(old) < Version(since) <= Version(new)


def _in_force(table, version: str):
    """The last row of a (since, ...) table in force at `version`, or None."""
    rows = [row for row in table if Version(row[0]) <= Version(version)]
    return rows[-1] if rows else None


def hop_findings(old: str, new: str, facts: dict | None, accepted: list[str] = ()) -> list[Finding]:
    """What the rules say of the hop old -> new on the server the facts describe."""
    if not facts:
        return []
    found: list[Finding] = []

    def add(rule_id, level, text, source):
        found.append(Finding(rule_id, level, text, source, accepted=rule_id in accepted))

    licensed = bool(facts.get("licensed"))
    active = facts.get("active_users")
    limit = _in_force(USER_LIMITS, new)
    before = _in_force(USER_LIMITS, old)
    if limit and active is not None and not licensed and limit[1:3] != (before or (None, None, None))[1:3]:
        _, soft, hard, source = limit
        if active >= hard:
            add("user-limit", "refuse", f"{new} (Team Edition, no licence) refuses every new account from {hard} active "
                f"accounts on; this server has {active}: after the hop nobody new can join (and mattermost_users_create "
                "fails); the accounts that exist still log in", source)
        elif active >= soft:
            add("user-limit", "warn", f"{new} (Team Edition, no licence) warns admins from {soft} active accounts and "
                f"refuses new ones from {hard}; this server has {active}", source)
    minimum = _in_force(POSTGRES_MINIMUM, new)
    pg = facts.get("postgres_major")
    if minimum and pg is not None and pg < minimum[1]:
        add("postgresql-minimum", "refuse", f"{new} needs PostgreSQL {minimum[1]} or newer and stops at start below it; "
            f"this server runs {pg}: first `make os-upgrade` (a newer Debian brings a newer PostgreSQL) or move the "
            "cluster to a newer PostgreSQL (pg_upgradecluster)", minimum[2])
    if _crosses(old, new, "11.0.0") and not licensed and (facts.get("login") or {}).get("gitlab"):
        add("gitlab-sso", "refuse", f"GitLab sign-in is switched on (GitLabSettings.Enable), and {new} offers it to "
            "clients only under a licence: the login page loses the button for the people who sign in with GitLab "
            "(measured on the real 11.4: /api/v4/config/client no longer carries EnableSignUpWithGitLab)",
            "server/config/client.go of 11.4: EnableSignUpWithGitLab only if license.Features.OpenId; v11 changelog: "
            "GitLab SSO deprecated in Team Edition")
    for since, plugins in DROPPED_PLUGINS.items():
        if _crosses(old, new, since) and not licensed:
            for plugin in sorted(set(plugins) & set(facts.get("plugins_enabled") or [])):
                used = facts.get(plugin)  # how much people keep in it (playbooks: their number)
                if plugin == "playbooks" and not used:
                    continue  # installed and on by Mattermost's default, but nobody made a playbook
                add(f"plugin-{plugin}", "refuse", f"the plugin {plugin} is active" + (f" with {used} in use" if used else "")
                    + f"; {new} does not run it on Team Edition", plugins[plugin])
    if _crosses(old, new, "11.0.0"):
        unmanaged = sorted(facts.get("plugins_unmanaged") or [])
        if unmanaged:
            add("unmanaged-plugins", "refuse", f"plugins installed by hand into the plugins folder ({', '.join(unmanaged)}) "
                f"are deleted by {new} at its first start, with no error (measured on the real 11.4); upload them with "
                "`mmctl plugin add` first, so they are kept in the file store",
                "server/channels/app/plugin.go of 11.4: the startup sync removes every local plugin and installs those "
                "of the file store; v11 changelog: manually installed plugins no longer supported")
    for since, keys in REMOVED_SETTINGS.items():
        if _crosses(old, new, since):
            changed = sorted(k for k, default in keys.items()
                             if k in (facts.get("settings") or {}) and facts["settings"][k] != default)
            if changed:
                add("removed-settings", "warn", f"{new} no longer has {', '.join(changed)}, which this server changed "
                    "from their defaults: what they did stops", f"config.json of {old.rsplit('.', 1)[0]} and "
                    f"{new.rsplit('.', 1)[0]} as Mattermost's config_generator writes them")
    for low, below, high, source in AVOIDED_PAIRS:
        if Version(low) <= Version(old) < Version(below) and Version(new) <= Version(high):
            add("version-pair", "refuse", f"{old} -> {new} is a pair Mattermost says not to upgrade between", source)
    disk = facts.get("disk") or {}
    if disk.get("free") is not None and disk.get("need") and disk["free"] < disk["need"]:
        add("disk", "refuse", f"the backup before the hop needs about {disk['need'] >> 20} MB in {disk.get('path')}, "
            f"{disk['free'] >> 20} MB are free", "the deploy's own backup before every hop (database dump and data)")
    return found


def chain_findings(chain: list[tuple[str, str]], facts: dict | None, accepted: list[str] = ()) -> list[list[Finding]]:
    """Each hop's findings, in order."""
    return [hop_findings(old, new, facts, accepted) for old, new in chain]


def removed_settings() -> list[str]:
    """Every setting some version removed: what the state read reports the values of."""
    return sorted({key for keys in REMOVED_SETTINGS.values() for key in keys})


def first_refusal(chain: list[tuple[str, str]], facts: dict | None, accepted: list[str] = ()) -> tuple | None:
    """(hop number, old, new, the refusing findings) of the first hop that may not start."""
    for number, ((old, new), findings) in enumerate(zip(chain, chain_findings(chain, facts, accepted), strict=True), 1):
        refusing = [f for f in findings if f.refuses]
        if refusing:
            return number, old, new, refusing
    return None


def refusal_text(number: int, old: str, new: str, refusing: list[Finding]) -> str:
    ids = ", ".join(f'"{f.id}"' for f in refusing)
    return (f"hop {number} {old} -> {new}: " + "; ".join(f"[{f.id}] {f.text} (source: {f.source})" for f in refusing)
            + f" - to go ahead anyway: mattermost_upgrade_accept = [{ids}]")


def checked(d: Decision, facts: dict | None, accepted: list[str] = ()) -> Decision:
    """The decision with its hops checked: refused when the first hop may not start; the chain
    cut before a later hop that may not (the hops before it still run, each with its own
    backup and way back; the run then says where it stopped and why)."""
    if not d.upgrade:
        return d
    refusal = first_refusal(d.chain, facts, accepted)
    if refusal is None:
        return d
    number, old, new, refusing = refusal
    reason = refusal_text(number, old, new, refusing)
    start = d.action.split()[1]
    if number == 1:
        return Decision(start, d.candidate, d.latest, f"blocked: {reason}", reason)
    hops = d.hops[:number - 1]
    return Decision(hops[-1], d.candidate, d.latest, "upgrade " + " -> ".join([start, *hops]), hops=tuple(hops),
                    stops_before=reason)
