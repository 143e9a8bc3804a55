"""config.json: the DataSource built from its parts, the owned keys compared and merged (the
admin's System Console settings untouched), secrets masked.
"""

import hashlib
import json
import os
import pwd
import re
import smtplib
import ssl
import urllib.parse

from mmhelper.parts.common import MASK, Failure, read_password, write_private
from mmhelper.parts.s3 import files_probe

SECRET_KEYS = ("DataSource", "DataSourceReplicas", "DataSourceSearchReplicas", "AtRestEncryptKey",
               "PublicLinkSalt", "SMTPPassword", "Secret", "AmazonS3SecretAccessKey", "Password")


def is_secret_key(dotted):
    return any(dotted.split(".")[-1].endswith(k) for k in SECRET_KEYS)


def parse_datasource(value):
    """postgres://user:pw@host:port/db?params -> parts; the password is kept separately."""
    url = urllib.parse.urlsplit(value or "")
    if url.scheme not in ("postgres", "postgresql"):
        return None
    return {
        "user": urllib.parse.unquote(url.username or ""),
        "password": urllib.parse.unquote(url.password or ""),
        "host": url.hostname or "localhost",
        "port": url.port or 5432,
        "database": url.path.lstrip("/"),
        "params": url.query,
    }


def build_datasource(spec, password):
    """The DataSource Mattermost's install guide describes, from non-secret parts + password."""
    return "postgres://{}:{}@{}:{}/{}?{}".format(
        urllib.parse.quote(spec["user"], safe=""), urllib.parse.quote(password, safe=""),
        spec["host"], spec["port"], urllib.parse.quote(spec["database"], safe=""), spec["params"])


def mask_datasource(value):
    parts = parse_datasource(value)
    if not parts:
        return MASK
    return "postgres://{}:{}@{}:{}/{}?{}".format(parts["user"], MASK, parts["host"], parts["port"],
                                                 parts["database"], parts["params"])


def resolve_desired(desired, password, missing_secret=None):
    """Replace {"$datasource": {...}} markers with the real DataSource and
    {"$secret_file": path} markers with that root-only file's content (the SMTP password):
    secrets reach config.json on the server only. A secret file not there yet resolves to
    `missing_secret` when given (the state query: the key then differs), else fails."""
    resolved = {}
    for key, value in desired.items():
        if isinstance(value, dict) and "$after_move" in value:
            resolved[key] = {"$after_move": resolve_desired({key: value["$after_move"]}, password,
                                                            missing_secret)[key]}
            continue
        if isinstance(value, dict) and "$datasource" in value:
            if password is None:
                raise Failure("no database password on the server yet: run the full deploy "
                              "(it creates one), or set MATTERMOST_DB_PASSWORD")
            value = build_datasource(value["$datasource"], password)
        elif isinstance(value, dict) and "$secret_file" in value:
            secret = read_password(value["$secret_file"])
            if secret is None and missing_secret is None:
                raise Failure(f"{value['$secret_file']} is missing on the server: run the full deploy")
            value = missing_secret if secret is None else secret
        resolved[key] = value
    return resolved


def split_key(dotted):
    """"A.B.C" -> [A, B, C]; a part in brackets keeps its dots, for map keys such as plugin
    ids: "PluginSettings.PluginStates[com.mattermost.calls].Enable"."""
    parts = re.findall(r"\[([^\]]+)\]|([^.\[\]]+)", dotted)
    return [a or b for a, b in parts]


def get_dotted(config, dotted):
    node = config
    for part in split_key(dotted):
        if not isinstance(node, dict) or part not in node:
            return None, False
        node = node[part]
    return node, True


def set_dotted(config, dotted, value):
    parts = split_key(dotted)
    node = config
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def applicable(config, desired):
    """The owned keys that apply to this config. A value marked {"$if_section": v} is owned
    only where the config has that section: Mattermost drops sections a version no longer
    knows (e.g. NotificationLogSettings, gone in v11) when it saves, so owning one there
    would never converge. While the database is MySQL (an old hand install before `make
    db-migrate`), SqlSettings are left as they are: the migration switches them."""
    on_mysql = get_dotted(config, "SqlSettings.DriverName")[0] == "mysql"
    local_db = (parse_datasource(get_dotted(config, "SqlSettings.DataSource")[0] or "") or {}).get("host") in \
        ("localhost", "127.0.0.1", "::1", "")
    result = {}
    for key, value in desired.items():
        if on_mysql and key.startswith("SqlSettings."):
            continue
        if isinstance(value, dict) and "$after_move" in value:
            if local_db and get_dotted(config, key)[1]:
                continue  # still on this server's database: `make move-database` switches it
            value = value["$after_move"]
        if isinstance(value, dict) and "$if_section" in value:
            if key.split(".")[0] not in config:
                continue
            value = value["$if_section"]
        if isinstance(value, dict) and "$keep_unless_fresh" in value:
            continue  # set on a new config.json only (merge_config_file); otherwise left as it is
        result[key] = value
    return result


def config_differences(config, desired):
    """Keys of `desired` whose value in `config` differs (missing counts as different)."""
    def same(a, b):  # JSON equality: 0 is not false, 1 is not "1"
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)

    result = []
    for key, value in applicable(config, desired).items():
        current, present = get_dotted(config, key)
        if not present or not same(current, value):
            result.append(key)
    return sorted(result)


def merge_config(config, desired):
    """Set only the owned keys; every other setting stays as the admin left it."""
    changed = config_differences(config, desired)
    desired = applicable(config, desired)
    for key in changed:
        set_dotted(config, key, desired[key])
    return changed


def display_value(key, value):
    if value is None:
        return None
    if key.endswith("DataSource") and isinstance(value, str):
        return mask_datasource(value)
    if is_secret_key(key):
        return MASK
    return value


def password_digest(password, salt):
    """A slow salted digest, so the workstation can tell whether the password it holds is
    the one on the server without the password (or a cheap hash of it) crossing over."""
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 200_000).hex()


def merge_config_file(spec):
    """Merge the owned keys into config.json; seeded from the release defaults on a
    fresh install. Written atomically, 0600, owned by the service user; only when a key
    differs. Prints the names of the keys it set, never their values."""
    with open(spec["desired_file"]) as f:
        desired = resolve_desired(json.load(f), read_password(spec["password_file"]))
    path = spec["config_file"]
    if os.path.exists(path):
        with open(path) as f:
            try:
                config = json.load(f)
            except ValueError as e:
                raise Failure(f"{path} is not valid JSON ({e}): fix or restore it, then re-run") from None
    else:
        with open(spec["seed_file"]) as f:
            config = json.load(f)
        print(f"  new {path} from the release defaults", flush=True)
        # A new config.json: what is kept on an existing one is set here (a fresh "app" server
        # uses its remote database from the start: there is nothing local to move).
        desired = {k: v["$keep_unless_fresh"] if isinstance(v, dict) and "$keep_unless_fresh" in v else
                   v["$after_move"] if isinstance(v, dict) and "$after_move" in v else v
                   for k, v in desired.items()}
    changed = merge_config(config, desired)
    # Only when the deploy owns the relay (smtp_server) and a key of the connection changed:
    # a privacy key in EmailSettings (PushNotificationContents) must not try Mattermost's
    # default relay (localhost:10025).
    smtp_keys = {f"EmailSettings.{k}" for k in ("SMTPServer", "SMTPPort", "ConnectionSecurity", "EnableSMTPAuth",
                                                "SMTPUsername", "SMTPPassword", "SkipServerCertificateVerification")}
    if "EmailSettings.SMTPServer" in desired and smtp_keys & set(changed):
        # The e-mail settings are enabled only once their server takes them: connection,
        # TLS as configured and the login (no message is sent).
        problem = smtp_check(config, login=True)
        if problem:
            raise Failure(f"the SMTP settings do not work: {problem} - check smtp_* and MATTERMOST_SMTP_PASSWORD; "
                          "config.json was not changed")
    if spec.get("files_probe") and any(k.startswith("FileSettings.AmazonS3") for k in changed):

        result = files_probe(spec["files_probe"])
        problem = result.get("problem") or result.get("pending")
        if problem:
            raise Failure(f"the object store refuses Mattermost's key: {problem} - check files_s3_* and "
                          "MATTERMOST_S3_ACCESS_KEY_ID/SECRET_ACCESS_KEY; config.json was not changed")
    user = pwd.getpwnam(spec["user"])
    if changed or not os.path.exists(path):
        write_private(path, json.dumps(config, indent=4) + "\n", user.pw_uid, user.pw_gid)
    else:
        os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(path, 0o600)
    print("config.json: set " + (", ".join(changed) if changed else "nothing"))


def smtp_session(config, login=False, timeout=10):
    """An SMTP session opened the way Mattermost opens it from config.json's EmailSettings:
    ConnectionSecurity "" (plain), "STARTTLS" or "TLS" (implicit), certificates verified
    unless SkipServerCertificateVerification (public/model/config.go EmailSettings; the
    sending side is server/v8/channels/app/mail). With login, SMTPUsername/SMTPPassword
    are tried when EnableSMTPAuth is on. The caller closes it (a context manager)."""
    def get(key):
        return get_dotted(config, f"EmailSettings.{key}")[0]

    server, port, security = get("SMTPServer") or "", str(get("SMTPPort") or "25"), get("ConnectionSecurity") or ""
    context = ssl._create_unverified_context() if get("SkipServerCertificateVerification") else ssl.create_default_context()
    if security == "TLS":
        session = smtplib.SMTP_SSL(server, int(port), timeout=timeout, context=context)
    else:
        session = smtplib.SMTP(server, int(port), timeout=timeout)
    try:
        session.ehlo("mattermost-deploy")
        if security == "STARTTLS":
            session.starttls(context=context)
            session.ehlo("mattermost-deploy")
        if login and get("EnableSMTPAuth"):
            session.login(get("SMTPUsername") or "", get("SMTPPassword") or "")
    except BaseException:
        session.close()
        raise
    return session


def smtp_check(config, login=False, timeout=10):
    """None when the SMTP server config.json names accepts a session (see smtp_session),
    else the reason, for the operator."""
    def get(key):
        return get_dotted(config, f"EmailSettings.{key}")[0]

    server, port, security = get("SMTPServer") or "", str(get("SMTPPort") or "25"), get("ConnectionSecurity") or ""
    try:
        with smtp_session(config, login=login, timeout=timeout):
            pass
    except smtplib.SMTPAuthenticationError as e:
        return f"{server}:{port} refused the login of {get('SMTPUsername')!r} ({e.smtp_code})"
    except smtplib.SMTPNotSupportedError as e:
        return f"{server}:{port} does not offer {'STARTTLS' if 'STARTTLS' in str(e) else 'this'} ({e})"
    except (OSError, smtplib.SMTPException, ValueError) as e:
        return f"{server}:{port} ({security or 'no TLS'}): {e.__class__.__name__}: {e}"
    return None


def smtp_send(config, to, subject, body, timeout=20):
    """One plain-text mail through the relay config.json names, From: its FeedbackEmail."""
    import email.message
    import email.utils

    message = email.message.EmailMessage()
    sender = get_dotted(config, "EmailSettings.FeedbackEmail")[0] or "mattermost@localhost"
    name = get_dotted(config, "EmailSettings.FeedbackName")[0] or ""
    message["From"] = email.utils.formataddr((name, sender))
    message["To"], message["Subject"] = to, subject
    message["Date"], message["Message-ID"] = email.utils.formatdate(), email.utils.make_msgid()
    message.set_content(body)
    with smtp_session(config, login=True, timeout=timeout) as session:
        session.send_message(message)


def write_keys(config_file, values):
    """Set dotted keys in config.json, atomically, its owner kept and its mode 0600: the
    switch of every job (the database, the file store) and its way back."""
    with open(config_file) as f:
        config = json.load(f)
    for key, value in values.items():
        set_dotted(config, key, value)
    st = os.stat(config_file)
    write_private(config_file, json.dumps(config, indent=4) + "\n", uid=st.st_uid, gid=st.st_gid, mode=0o600)
