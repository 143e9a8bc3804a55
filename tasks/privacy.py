"""Every outbound flow the real Mattermost server (or its web app) starts on its own, one
switch each, and the config.json keys that open or close it. PRIVACY.md says what each
flow sends where; `mattermost_privacy_strict` closes all of them.

The keys were read in Mattermost's source (server/public/model/config.go for the keys and
their defaults; where each is used is named per flow) and checked against the config.json
the real 10.3 and 11.4 binaries write (tests/unit/test_privacy.py).
"""

from __future__ import annotations

# flow -> (what it is, the keys when allowed, the keys when closed). "Allowed" keeps
# Mattermost's own default for the key, except where noted.
FLOWS: dict[str, tuple[str, dict, dict]] = {
    # platform/services/telemetry (10.x: Rudder to pdat.matterlytics.com) and the web app's
    # telemetry, told by config/client.go "DiagnosticsEnabled".
    "telemetry": ("usage statistics to Mattermost",
                  {"LogSettings.EnableDiagnostics": True}, {"LogSettings.EnableDiagnostics": False}),
    # channels/app/server.go: Sentry starts only with EnableDiagnostics AND EnableSentry.
    "error_reports": ("crash and error reports to Mattermost's Sentry",
                      {"LogSettings.EnableSentry": True}, {"LogSettings.EnableSentry": False}),
    # channels/app/security_update_check.go: daily GET with the server id, version, OS and
    # user/team counts; the answer becomes a security bulletin for admins.
    "security_update_check": ("security bulletins from Mattermost (sends version and user counts)",
                              {"ServiceSettings.EnableSecurityFixAlert": True},
                              {"ServiceSettings.EnableSecurityFixAlert": False}),
    # EmailSettings.PushNotificationServer: the mobile apps' notifications go through it
    # (default https://push-test.mattermost.com) to Apple and Google.
    "push_notifications": ("mobile push notifications via Mattermost's push proxy, Apple and Google",
                           {"EmailSettings.SendPushNotifications": True},
                           {"EmailSettings.SendPushNotifications": False}),
    # PushNotificationContents: "full" (Mattermost's default) puts the message text into the
    # push; "generic" only says who wrote in which channel. Allowed here means "full".
    "push_message_text": ("message text inside push notifications",
                          {"EmailSettings.PushNotificationContents": "full"},
                          {"EmailSettings.PushNotificationContents": "generic"}),
    # channels/app/post_metadata.go: the server fetches every posted link for its preview.
    "link_previews": ("the server fetches posted links for previews",
                      {"ServiceSettings.EnableLinkPreviews": True}, {"ServiceSettings.EnableLinkPreviews": False}),
    # platform/services/imageproxy: when on, the server fetches external images for the
    # browsers (their addresses stay hidden from those hosts); off, browsers fetch them.
    "image_proxy": ("the server fetches external images for the browsers",
                    {"ImageProxySettings.Enable": True, "ImageProxySettings.ImageProxyType": "local"},
                    {"ImageProxySettings.Enable": False}),
    # The web app's GIF picker searches a GIF service from the users' browsers.
    "gif_picker": ("GIF search from the browsers", {"ServiceSettings.EnableGifPicker": True},
                   {"ServiceSettings.EnableGifPicker": False}),
    # channels/app/product_notices.go: the server fetches AnnouncementSettings.NoticesURL
    # (https://notices.mattermost.com/) hourly and shows in-product notices.
    "product_notices": ("in-product notices fetched from notices.mattermost.com",
                        {"AnnouncementSettings.AdminNoticesEnabled": True,
                         "AnnouncementSettings.UserNoticesEnabled": True},
                        {"AnnouncementSettings.AdminNoticesEnabled": False,
                         "AnnouncementSettings.UserNoticesEnabled": False}),
    # channels/app/plugin.go, plugin_install.go: plugin listing and downloads from
    # PluginSettings.MarketplaceURL (https://api.integrations.mattermost.com).
    "plugin_marketplace": ("plugin listings and downloads from Mattermost's marketplace",
                           {"PluginSettings.EnableRemoteMarketplace": True},
                           {"PluginSettings.EnableRemoteMarketplace": False}),
    # The prepackaged Calls plugin: STUN to stun.global.calls.mattermost.com and, when set,
    # TURN servers. Closed = the plugin disabled (PluginSettings.PluginStates).
    "calls": ("voice calls (STUN/TURN to Mattermost's servers)",
              {"PluginSettings.PluginStates[com.mattermost.calls].Enable": True},
              {"PluginSettings.PluginStates[com.mattermost.calls].Enable": False}),
    # The prepackaged NPS plugin: satisfaction surveys whose answers go to Mattermost.
    "nps_surveys": ("satisfaction surveys sent to Mattermost",
                    {"PluginSettings.PluginStates[com.mattermost.nps].Enable": True},
                    {"PluginSettings.PluginStates[com.mattermost.nps].Enable": False}),
}

# This deploy's defaults: nothing about the server or its errors goes to Mattermost, push
# notifications work but carry no message text; the rest as Mattermost ships it.
DEFAULTS = {
    "telemetry": False, "error_reports": False, "security_update_check": True, "push_notifications": True,
    "push_message_text": False, "link_previews": True, "image_proxy": False, "gif_picker": True,
    "product_notices": True, "plugin_marketplace": True, "calls": True, "nps_surveys": True,
}


def problems(overrides: dict) -> list[str]:
    unknown = sorted(set(overrides) - set(FLOWS))
    out = [f"mattermost_privacy: unknown flow(s) {', '.join(unknown)} (known: {', '.join(FLOWS)})"] if unknown else []
    out += [f"mattermost_privacy[{k!r}] must be True or False" for k, v in overrides.items()
            if k in FLOWS and not isinstance(v, bool)]
    return out


def choices(overrides: dict, strict: bool) -> dict[str, bool]:
    """flow -> allowed."""
    return {flow: False if strict else bool(overrides.get(flow, DEFAULTS[flow])) for flow in FLOWS}


# Mattermost's own choice per flow (public/model/config.go SetDefaults): all open but the
# image proxy.
MATTERMOST_DEFAULTS = {flow: flow != "image_proxy" for flow in FLOWS}


def owned_keys(overrides: dict, strict: bool) -> dict:
    """The keys the deploy owns: every flow when strict; otherwise the flows the operator
    names and those where this deploy's default differs from Mattermost's. The others stay
    the admin's (System Console)."""
    keys: dict = {}
    for flow, allowed in choices(overrides, strict).items():
        if strict or flow in overrides or DEFAULTS[flow] != MATTERMOST_DEFAULTS[flow]:
            keys.update(FLOWS[flow][1] if allowed else FLOWS[flow][2])
    return keys
