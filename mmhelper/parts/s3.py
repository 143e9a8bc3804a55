"""A small S3 client in the standard library, for what the deploy itself must ask a bucket:
the probe (write, read, delete an object with Mattermost's key, before any change) and the
listing that checks every file the database names arrived. Requests are signed with AWS
Signature Version 4 and addressed path-style (bucket in the path), as Mattermost's minio-go
client does for every endpoint that is not AWS, Google or Aliyun. Bulk copies are rclone's
(Debian's), not this module's.
"""

import datetime
import hashlib
import hmac
import http.client
import ssl
import urllib.parse
import xml.etree.ElementTree as ET

from mmhelper.parts.common import Failure, read_password

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key, text):
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret, day, region, service="s3"):
    key = _hmac(("AWS4" + secret).encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def quote_path(path):
    return urllib.parse.quote(path, safe="/-_.~")


def canonical_query(query):
    pairs = sorted((urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~")) for k, v in query.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def sign(method, host, path, query, headers, payload_hash, access_key, secret_key, region, now=None):
    """The request's headers with Authorization (AWS SigV4, all given headers signed)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 - the helper runs on Python 3.9
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    headers = {**headers, "host": host, "x-amz-date": stamp, "x-amz-content-sha256": payload_hash}
    names = sorted(k.lower() for k in headers)
    lowered = {k.lower(): " ".join(str(v).strip().split()) for k, v in headers.items()}
    canonical = "\n".join([method, quote_path(path), canonical_query(query),
                           "".join(f"{n}:{lowered[n]}\n" for n in names), ";".join(names), payload_hash])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(signing_key(secret_key, day, region), to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return headers


class Bucket:
    """One bucket at an endpoint (host[:port], as Mattermost's AmazonS3Endpoint), with a key."""

    def __init__(self, endpoint, bucket, access_key, secret_key, region="", ssl_on=True, prefix="", timeout=60):
        self.endpoint, self.bucket, self.prefix = endpoint, bucket, prefix.strip("/")
        self.access_key, self.secret_key = access_key, secret_key
        self.region = region or "us-east-1"  # minio-go's default when none is set
        self.ssl_on, self.timeout = ssl_on, timeout

    def key(self, name):
        return f"{self.prefix}/{name}" if self.prefix else name

    def request(self, method, key="", query=None, body=b"", headers=None):
        """(status, headers, body) of one signed request; OSError/ssl errors as Failure."""
        query = query or {}
        path = f"/{self.bucket}/{key}" if key else f"/{self.bucket}"
        signed = sign(method, self.endpoint, path, query, headers or {}, hashlib.sha256(body).hexdigest(),
                      self.access_key, self.secret_key, self.region)
        conn_class = http.client.HTTPSConnection if self.ssl_on else http.client.HTTPConnection
        extra = {"context": ssl.create_default_context()} if self.ssl_on else {}
        connection = conn_class(self.endpoint, timeout=self.timeout, **extra)
        target = quote_path(path) + (f"?{canonical_query(query)}" if query else "")
        try:
            connection.request(method, target, body=body or None, headers=signed)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        except (OSError, ssl.SSLError, http.client.HTTPException) as e:
            raise Failure(f"the object store at {self.endpoint} does not answer as configured: "
                          f"{type(e).__name__}: {e}") from None
        finally:
            connection.close()

    def put(self, name, data):
        return self.request("PUT", self.key(name), body=data)

    def get(self, name):
        return self.request("GET", self.key(name))

    def delete(self, name):
        return self.request("DELETE", self.key(name))


def error_code(body):
    """The S3 error's Code and Message, from its XML answer."""
    try:
        root = ET.fromstring(body)
        return f"{root.findtext('Code') or ''}: {root.findtext('Message') or ''}".strip(": ")
    except ET.ParseError:
        return body[:200].decode(errors="replace")


def probe(bucket, name):
    """Write, read back and delete one object with this key: None when all three work, else
    the first step that did not, in the store's own words."""
    data = b"mattermost-deploy probe: this key can write, read and delete here\n"
    status, _, body = bucket.put(name, data)
    if status not in (200, 201):
        return f"writing a probe object was refused: HTTP {status} {error_code(body)}"
    status, _, body = bucket.get(name)
    if status != 200 or body != data:
        return f"reading the probe object back failed: HTTP {status} {error_code(body) if status != 200 else ''}"
    status, _, body = bucket.delete(name)
    if status not in (200, 204):
        return f"deleting the probe object was refused: HTTP {status} {error_code(body)}"
    return None


def bucket_from(spec, which="access"):
    """A Bucket with the keys in the root-only files the spec names (None: not there yet)."""
    access = read_password(spec[which])
    secret = read_password(spec["secret" if which == "access" else "backup_secret"])
    if not access or not secret:
        return None
    return Bucket(spec["endpoint"], spec["bucket"], access, secret, spec.get("region", ""), spec.get("ssl", True),
                  spec.get("prefix", ""))


def files_probe(spec):
    """The state query's probe with the key on the server: {"problem": None | why} or
    {"pending": why not tried} (the keys are placed by this run; the merge probes then)."""
    import secrets

    bucket = bucket_from(spec)
    if bucket is None:
        return {"pending": "the keys are not on the server yet"}
    try:
        return {"problem": probe(bucket, f".mattermost-deploy-probe-{secrets.token_hex(6)}")}
    except Failure as e:
        return {"problem": str(e)}
