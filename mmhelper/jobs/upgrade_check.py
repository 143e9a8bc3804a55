"""The check after an upgrade's start, before the hop counts as done: what people use, not a
ping. Before the stop, what the old version offers is recorded (the plugins that run, the
sign-in methods the login page offers); after the start the new version must offer the same,
and a probe account must do what a person does through nginx at the public URL (its path
included): sign in with its token, post into its own channel, receive that post's websocket
event, upload a file and read it back; and the job server must take a job. Any failure rolls
the hop back (mmhelper/jobs/upgrade.py).

The probe is a bot (bots are not counted by Team Edition's account limit, so it works at the
limit; it is made while the old version serves) posting in its own direct-message channel,
which nobody else sees; the reports leave it out. Its token is root's (private_dir/probe-token).
"""

import base64
import http.client
import json
import os
import secrets
import socket
import ssl
import time

from mmhelper.parts.common import Failure, read_password, write_private
from mmhelper.steps.housekeeping import PROBE, find_user, local_api

# What the login page is drawn from (/api/v4/config/client?format=old, no session): a method
# offered before and gone after means people who sign in with it cannot find the way in.
LOGIN_KEYS = ("EnableSignUpWithEmail", "EnableSignInWithEmail", "EnableSignInWithUsername", "EnableSignUpWithGitLab",
              "EnableSignUpWithGoogle", "EnableSignUpWithOffice365", "EnableSignUpWithOpenId", "EnableLdap",
              "EnableSaml")
# A job every Mattermost since 5.x registers (export_delete: channels/app/server.go), harmless:
# it deletes expired exports.
PROBE_JOB = "export_delete"


def _context():
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # nginx on loopback: the path is checked
    return context


class SiteConnection(http.client.HTTPSConnection):
    """HTTPS to nginx on this server (127.0.0.1:443) with the site's name in TLS (SNI) - the
    way people's requests arrive."""

    def __init__(self, site_name, port=443):
        super().__init__("127.0.0.1", port, timeout=30, context=_context())
        self.site_name = site_name

    def connect(self):
        self.sock = self._context.wrap_socket(socket.create_connection((self.host, self.port), self.timeout),
                                              server_hostname=self.site_name)


def _connection(spec):
    """Through nginx on this server, or - when nginx did not serve the site while the old
    version ran (a server adopted before its site is written) - to Mattermost's own listener."""
    if spec.get("direct"):
        return http.client.HTTPConnection("127.0.0.1", spec.get("listen_port", 8065), timeout=30)
    return SiteConnection(spec["domain"], spec.get("https_port", 443))


def _where(spec):
    return (f"Mattermost on 127.0.0.1:{spec.get('listen_port', 8065)}" if spec.get("direct")
            else f"nginx on this server for {spec['domain']}")


def _public(spec, method, path, body=None, headers=None, token=None):
    """A request through nginx on this server, as the public URL names it (Host and TLS name
    of the site, its path in front): (status, body bytes)."""
    conn = _connection(spec)
    all_headers = {"Host": spec["domain"], **(headers or {})}
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, spec["site_path"] + path, body=body, headers=all_headers)
        response = conn.getresponse()
        return response.status, response.read()
    except OSError as e:
        raise Failure(f"{_where(spec)} does not answer: {e}") from None
    finally:
        conn.close()


def _public_json(spec, method, path, body=None, token=None):
    status, data = _public(spec, method, path, json.dumps(body).encode() if body is not None else None,
                           {"Content-Type": "application/json"} if body is not None else None, token)
    if status >= 400:
        raise Failure(f"{method} {path} to {_where(spec)}: HTTP {status} {data[:200].decode(errors='replace')}")
    return json.loads(data or b"null")


def offered(spec):
    """What the old or the new version offers people: the plugins that run, the sign-in methods."""
    plugins = local_api(spec, "GET", "/api/v4/plugins") or {}
    status, data = _public(spec, "GET", "/api/v4/config/client?format=old")
    client = json.loads(data) if status == 200 else {}
    return {"plugins": sorted(p["id"] for p in plugins.get("active") or []),
            "login": sorted(k for k in LOGIN_KEYS if str(client.get(k)).lower() == "true")}


def _tokens_allowed(spec, allowed):
    """Switch EnableUserAccessTokens for the probe (10.x refuses a token without it); returns
    what it was, to put it back."""
    config = local_api(spec, "GET", "/api/v4/config")
    was = bool((config.get("ServiceSettings") or {}).get("EnableUserAccessTokens"))
    if was != allowed:
        before = _plugin_settings(spec)
        local_api(spec, "PUT", "/api/v4/config/patch", {"ServiceSettings": {"EnableUserAccessTokens": allowed}})
        _plugin_settings_kept(spec, before)
    return was


def _plugin_settings(spec):
    """PluginSettings.Plugins as config.json holds them (None: no file named, as in old specs)."""
    if not spec.get("config_file"):
        return None
    with open(spec["config_file"]) as f:
        return (json.load(f).get("PluginSettings") or {}).get("Plugins") or {}


def _plugin_settings_kept(spec, before):
    """Mattermost saves its whole config on a patch, and it does not keep the settings of plugins
    that are not installed (PluginSettings.Sanitize deletes them from what the API hands out): in
    the proven upgrade story (real 10.3 -> 11.4, the rollback and the probe's switches) the Calls
    ports the deploy owns were gone from config.json afterwards and the next deploy changed it
    again; a lone patch on a converged server kept them. Whatever the path, the file is compared
    before and after each switch, and what went missing is put back and reloaded."""
    if before is None:
        return
    config_file = spec["config_file"]
    with open(config_file) as f:
        config = json.load(f)
    plugins = config.setdefault("PluginSettings", {}).setdefault("Plugins", {})
    lost = {plugin: settings for plugin, settings in before.items() if plugin not in plugins}
    if not lost:
        return
    plugins.update(lost)
    st = os.stat(config_file)
    write_private(config_file, json.dumps(config, indent=4) + "\n", uid=st.st_uid, gid=st.st_gid, mode=0o600)
    local_api(spec, "POST", "/api/v4/config/reload")


def ensure_probe(spec):
    """The probe bot and its token, made while the old version serves (and the account limit
    of the new one does not yet apply to making it)."""
    token_file = spec["probe_token_file"]
    was = _tokens_allowed(spec, True)
    try:
        token = read_password(token_file)
        if token and _public(spec, "GET", "/api/v4/users/me", token=token)[0] == 200:
            return
        bot = find_user(spec, PROBE)
        if bot is None:
            bot = local_api(spec, "POST", "/api/v4/users", {
                "username": PROBE, "email": f"{PROBE}@localhost", "password": secrets.token_urlsafe(24) + "aA1!",
                "first_name": "Upgrade probe (mattermost-deploy)"})
        if not bot.get("is_bot"):
            local_api(spec, "POST", f"/api/v4/users/{bot['id']}/convert_to_bot")
        made = local_api(spec, "POST", f"/api/v4/users/{bot['id']}/tokens", {"description": "upgrade probe"})
        os.makedirs(os.path.dirname(token_file), mode=0o700, exist_ok=True)
        write_private(token_file, made["token"] + "\n")
    finally:
        if not was:
            _tokens_allowed(spec, False)


class WebSocket:
    """Just enough of RFC 6455 for the probe: the handshake through nginx with the bot's token,
    and text frames read until the wanted event arrives."""

    def __init__(self, spec, token):
        if spec.get("direct"):
            self.sock = socket.create_connection(("127.0.0.1", spec.get("listen_port", 8065)), timeout=30)
        else:
            raw = socket.create_connection(("127.0.0.1", spec.get("https_port", 443)), timeout=30)
            self.sock = _context().wrap_socket(raw, server_hostname=spec["domain"])
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {spec['site_path']}/api/v4/websocket HTTP/1.1\r\nHost: {spec['domain']}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Failure("the websocket through nginx closed during its handshake")
            head += chunk
        status = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in status + " ":
            raise Failure(f"the websocket through nginx was refused: {status}")
        self.buffer = head.split(b"\r\n\r\n", 1)[1]

    def _take(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Failure("the websocket through nginx closed")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def events(self, deadline):
        """Each event (JSON) the server sends, until the deadline."""
        while time.time() < deadline:
            self.sock.settimeout(max(0.1, deadline - time.time()))
            try:
                first, second = self._take(2)
            except TimeoutError:
                return
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                length = int.from_bytes(self._take(2), "big")
            elif length == 127:
                length = int.from_bytes(self._take(8), "big")
            payload = self._take(length)
            if opcode == 0x8:
                raise Failure("the server closed the websocket")
            if opcode == 0x9:  # ping: answer with a pong (client frames are masked)
                mask = os.urandom(4)
                self.sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + mask +
                                  bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
            elif opcode == 0x1:
                yield json.loads(payload)

    def close(self):
        self.sock.close()


def probe(spec):
    """What a person does, through nginx: sign in, post, get the post's websocket event,
    upload a file and read it back. Returns what failed, or None."""
    token = read_password(spec["probe_token_file"])
    if not token:
        return "the probe has no token (it is made before the stop; see the hop's output)"
    try:
        me = _public_json(spec, "GET", "/api/v4/users/me", token=token)
        channel = _public_json(spec, "POST", "/api/v4/channels/direct", [me["id"], me["id"]], token=token)
        socket_ = WebSocket(spec, token)
        try:
            message = f"upgrade probe {secrets.token_hex(6)}"
            post = _public_json(spec, "POST", "/api/v4/posts", {"channel_id": channel["id"], "message": message},
                                token=token)
            seen = any(event.get("event") == "posted" and json.loads(event["data"].get("post", "{}")).get("id") == post["id"]
                       for event in socket_.events(time.time() + 20))
        finally:
            socket_.close()
        if not seen:
            return "the post's websocket event did not arrive within 20 s"
        body = os.urandom(4096)
        boundary = "mmdeployprobe" + secrets.token_hex(6)
        form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"channel_id\"\r\n\r\n{channel['id']}\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"probe.bin\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + body + f"\r\n--{boundary}--\r\n".encode()
        status, data = _public(spec, "POST", "/api/v4/files", form,
                               {"Content-Type": f"multipart/form-data; boundary={boundary}"}, token)
        if status >= 400:
            return f"the file upload was refused: HTTP {status} {data[:200].decode(errors='replace')}"
        file_id = json.loads(data)["file_infos"][0]["id"]
        status, back = _public(spec, "GET", f"/api/v4/files/{file_id}", token=token)
        if status != 200 or back != body:
            return f"the uploaded file did not come back as it was (HTTP {status}, {len(back)} bytes)"
    except Failure as e:
        return str(e)
    return None


def job_server_runs(spec, timeout=90):
    """A harmless job is taken by the job server (leaves "pending") within the timeout; None
    when it is, or when this version will not make one."""
    try:
        job = local_api(spec, "POST", "/api/v4/jobs", {"type": PROBE_JOB})
    except Failure as e:  # a version without this job type: nothing proven, nothing failed
        print(f"  check after the start: no probe job ({e})", flush=True)
        return None
    deadline = time.time() + timeout
    while time.time() < deadline:
        # the list, not /jobs/{id}: the local API of older versions has only GET and POST /jobs
        listed = {j.get("id"): j for j in local_api(spec, "GET", "/api/v4/jobs?page=0&per_page=50") or []}
        if (listed.get(job["id"]) or {}).get("status") not in ("pending", None):
            return None
        time.sleep(2)
    return f"the job server did not take a job ({PROBE_JOB}) within {timeout} s"


def plugin_error(spec, plugin_id):
    """Why a plugin did not start, from Mattermost's own log ("Unable to activate plugin")."""
    path = os.path.join(spec["log_dir"], "mattermost.log")
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - (2 << 20)))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if plugin_id in line and ("activate plugin" in line or "sync plugin" in line):
            try:
                return json.loads(line).get("error")
            except ValueError:
                return line[-300:]
    return None


def nginx_serves(spec):
    """Whether nginx on this server answers for the site (any HTTP answer counts)."""
    try:
        _public(dict(spec, direct=False), "GET", "/api/v4/system/ping")
        return True
    except Failure:
        return False


def before_stop(spec):
    """While the old version serves: what it offers, and the probe ready. What cannot be read
    on it (an old version's local API lacks a route) is left out of the comparison and said.
    When nginx does not serve the site yet, the probe goes to Mattermost's own listener, before
    and after alike (spec["direct"])."""
    out = {"offered": None, "probe": None, "notes": [], "direct": False}
    if not nginx_serves(spec):
        out["direct"] = spec["direct"] = True
        out["notes"].append(f"nginx does not serve {spec['domain']} on this server yet: the probe goes to "
                            f"{_where(spec)}")
    try:
        out["offered"] = offered(spec)
    except (Failure, OSError, ValueError) as e:
        out["notes"].append(f"what the old version offers could not be read ({e}): plugins and sign-in methods are not "
                            "compared")
    try:
        ensure_probe(spec)
        out["probe"] = True
    except (Failure, OSError, ValueError, KeyError) as e:
        out["notes"].append(f"the probe account could not be made ({e}): the probe is left out")
    for note in out["notes"]:
        print(f"  check after the start: {note}", flush=True)
    return out


def after_start(spec, before, wait=60):
    """What the new version does not do that the old one did, in sentences; [] when it serves
    people as before."""
    spec = dict(spec, direct=bool(before.get("direct")))
    problems = [p for p in (_probed(spec) if before.get("probe") else None, job_server_runs(spec)) if p]
    if before.get("offered") is None:
        return problems
    deadline, before = time.time() + wait, before["offered"]
    now = offered(spec)
    while set(before["plugins"]) - set(now["plugins"]) and time.time() < deadline:
        time.sleep(3)  # plugins start after the server answers
        now = offered(spec)
    for plugin in sorted(set(before["plugins"]) - set(now["plugins"])):
        why = plugin_error(spec, plugin)
        problems.append(f"the plugin {plugin} no longer runs" + (f" ({why})" if why else ""))
    gone = sorted(set(before["login"]) - set(now["login"]))
    if gone:
        problems.append(f"the login page no longer offers {', '.join(gone)}")
    return problems


def _probed(spec):
    was = _tokens_allowed(spec, True)  # 10.x serves a bot's token only while they are allowed
    try:
        return probe(spec)
    finally:
        if not was:
            _tokens_allowed(spec, False)
