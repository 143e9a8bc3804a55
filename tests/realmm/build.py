"""REAL Mattermost for the tests: `bin/mattermost` and `bin/mmctl` built from Mattermost's
own Go module (github.com/mattermost/mattermost/server/v8; the Mattermost 5 and 6 servers
from their own module path, github.com/mattermost/mattermost-server/v5 and /v6, at an
exact release tag - their mmctl lived in another repository the proxy here does not
serve, so those releases have no bin/mmctl), the way Mattermost's release
build does it (server/Makefile and server/build/release.mk): `-trimpath -tags production`,
the build variables model.BuildNumber/BuildDate/BuildHash/BuildEnterpriseReady and mmctl's
buildDate, `config/config.json` written by Mattermost's own scripts/config_generator with
the same edits release.mk makes, and `fonts/`, `templates/`, `i18n/` from the module.

One wrapper module per version under tests/realmm/modules/<version>/: its go.mod pins
server/v8 and server/public OF THE SAME COMMIT (server/go.mod pins an older public than
its code needs) and repeats the server's own replace lines; its go.sum is kept so every
download is checked (GONOSUMDB only skips the checksum database, which does not know
these pseudo-versions). See ../shared/reference/mattermost-from-source.md.

Built once per version into .cache/realmm/<version>/ (a cold build shows progress and its
time; about two minutes per version on two cores once the module cache is warm).

    python -m tests.realmm.build [VERSION ...]     # build (default: every pinned version)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MODULES = HERE / "modules"
CACHE = ROOT / ".cache" / "realmm"
SERVER = "github.com/mattermost/mattermost/server/v8"
PUBLIC = "github.com/mattermost/mattermost/server/public"
PSEUDO = re.compile(r"^v8\.0\.0-(\d{14})-([0-9a-f]{12})$")
# Mattermost 5.x and 6.x (and 7.x, whose tags the module proxy cannot serve: they were made
# under the /v6 path) were one module per major version, tagged vX.Y.Z.
OLD_SERVER = re.compile(r"^(?:require)?\s*(github\.com/mattermost/mattermost-server/v[56]) (v\d+\.\d+\.\d+)$", re.M)


class BuildError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[realmm] {msg}", file=sys.stderr, flush=True)


def versions() -> list[str]:
    """The Mattermost versions pinned here, oldest first."""
    found = [p.name for p in MODULES.iterdir() if (p / "go.mod").exists()]
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


def modern_versions() -> list[str]:
    """The versions built from server/v8 (Mattermost 8 and later), oldest first."""
    return [v for v in versions() if int(v.split(".")[0]) >= 8]


def old_versions() -> list[str]:
    """The Mattermost 5 and 6 releases, the servers people installed years ago."""
    return [v for v in versions() if int(v.split(".")[0]) < 8]


def pins(version: str) -> dict:
    """The module to build, its version, commit and commit time, read from go.mod (and, for
    a tagged old release, the tag's time from the module proxy's .info)."""
    text = (MODULES / version / "go.mod").read_text()
    old = OLD_SERVER.search(text)
    if old:
        module, tag = old.groups()
        info = json.loads(_go(version, "mod", "download", "-json", f"{module}@{tag}"))
        stamp = json.loads(Path(info["Info"]).read_text())["Time"]
        return {"module": module, "server": tag, "public": None, "commit": f"tag-{tag}", "date": stamp,
                "programs": ("mattermost",), "tags": ()}
    server = re.search(rf"^\s*{re.escape(SERVER)} (\S+)", text, re.M).group(1)
    public = re.search(rf"^\s*{re.escape(PUBLIC)} (\S+)", text, re.M).group(1)
    stamp, commit = PSEUDO.match(server).groups()
    date = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[8:10]}:{stamp[10:12]}:{stamp[12:]}Z"
    return {"module": SERVER, "server": server, "public": public, "commit": commit, "date": date,
            "programs": ("mattermost", "mmctl"), "tags": ("production",)}


def go_env(version: str) -> dict:
    env = dict(os.environ)
    env.update(
        GONOSUMDB="github.com/mattermost",  # the checksum DB has no entry for these pseudo-versions
        GOFLAGS="-mod=readonly",  # go.mod and go.sum are the pins: never rewritten by a build
        GOTOOLCHAIN="local",
        # No cgo: a binary that needs no particular glibc, so one build runs on Debian 11
        # (glibc 2.31) as on 13; linked against this machine's glibc it asks for GLIBC_2.34.
        CGO_ENABLED="0",
    )
    return env


def _go(version: str, *args: str, env: dict | None = None) -> str:
    proc = subprocess.run(["go", *args], cwd=MODULES / version, env=env or go_env(version),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"go {' '.join(args[:2])} for Mattermost {version} failed:\n{proc.stderr[-4000:]}")
    return proc.stdout


def module_dir(version: str) -> Path:
    """The server module's folder in the module cache (read-only): the whole server source
    of this exact version, and the assets a release ships."""
    out = _go(version, "mod", "download", "-json", pins(version)["module"])
    return Path(json.loads(out)["Dir"])


def _stamp(version: str) -> dict:
    files = MODULES / version
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((files / name).read_bytes())
    digest.update(Path(__file__).read_bytes())
    go_version = subprocess.run(["go", "version"], capture_output=True, text=True).stdout.strip()
    return {"version": version, "pins": digest.hexdigest(), "go": go_version}


def built_dir(version: str) -> Path:
    return CACHE / version


def is_built(version: str) -> bool:
    stamp = built_dir(version) / "build.json"
    return stamp.exists() and json.loads(stamp.read_text()) == _stamp(version)


class _Heartbeat:
    """A line every 20 s while a long step runs, so a cold build visibly progresses."""

    def __init__(self, what: str):
        self.what, self.start, self.done = what, time.time(), threading.Event()

    def __enter__(self):
        log(f"{self.what} ...")
        threading.Thread(target=self._beat, daemon=True).start()
        return self

    def _beat(self):
        while not self.done.wait(20):
            log(f"  {self.what}: {time.time() - self.start:.0f} s so far")

    def __exit__(self, *exc):
        self.done.set()
        if exc[0] is None:
            log(f"{self.what}: done in {time.time() - self.start:.0f} s")


def ensure_built(version: str) -> Path:
    """.cache/realmm/<version>/ holding the release's files made from the real program:
    bin/mattermost, bin/mmctl, config/config.json (0600), config/README.md, fonts/,
    templates/, i18n/. Built when missing or when the pins changed."""
    if version not in versions():
        raise BuildError(f"no pinned Go module for Mattermost {version} in {MODULES}")
    dest = built_dir(version)
    if is_built(version):
        return dest
    if not shutil.which("go"):
        raise BuildError("the go command is missing: install Go (https://go.dev/dl or Debian's golang) to "
                         "build Mattermost from source for the tests")
    started = time.time()
    p = pins(version)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bin").mkdir(parents=True)
    env = go_env(version)
    module = p["module"]
    # Mattermost 5/6 kept model/ in the server module; 8+ in server/public.
    model = f"{PUBLIC}/model" if module == SERVER else f"{module}/model"
    ldflags = " ".join([
        f"-X {model}.BuildNumber={version}",  # a release's build number; "dev" changes behaviour
        f"-X {model}.BuildDate={p['date']}",
        f"-X {model}.BuildHash={p['commit']}",
        f"-X {model}.BuildHashEnterprise=none",
        f"-X {model}.BuildEnterpriseReady=false",  # built without the (private) enterprise code
        *([f"-X {SERVER}/cmd/mmctl/commands.buildDate={p['date']}"] if "mmctl" in p["programs"] else []),
        # 6.x pins a golang.org/x/net that reaches into the runtime with //go:linkname, which
        # the linker refuses since Go 1.23 ("invalid reference to syscall.recvmsg"): accept it
        # as the Go of its time did, rather than change the dependencies Mattermost shipped.
        *(["-checklinkname=0"] if module != SERVER else []),
    ])
    for name in p["programs"]:
        cold = " (a cold module cache first downloads about 1.5 GB)" if name == "mattermost" else ""
        tags = ["-tags", ",".join(p["tags"])] if p["tags"] else []
        with _Heartbeat(f"building {name} {version} from {module}@{p['server']}{cold}"):
            _go(version, "build", "-trimpath", *tags, "-ldflags", ldflags,
                "-o", str(tmp / "bin" / name), f"{module}/cmd/{name}", env=env)
    source = module_dir(version)
    _write_default_config(version, source, tmp, env)
    for folder in ("fonts", "templates", "i18n"):
        shutil.copytree(source / folder, tmp / folder, ignore=shutil.ignore_patterns("*.mjml", "partials"))
    shutil.copyfile(source / "config" / "README.md", tmp / "config" / "README.md")
    shutil.copyfile(source / "build" / "MIT-COMPILED-LICENSE.md", tmp / "MIT-COMPILED-LICENSE.md")
    for path in tmp.rglob("*"):  # the module cache is read-only; our copies are not
        path.chmod(0o755 if path.is_dir() or path.parent.name == "bin" else 0o644)
    (tmp / "config" / "config.json").chmod(0o600)
    # 5.x and 6.x start the server (and wait for its database) for `version` unless told not to;
    # 6.7 accepts the flag as deprecated; 8+ no longer knows it.
    flag = ["--skip-server-start"] if int(version.split(".")[0]) < 8 else []
    out = subprocess.run([str(tmp / "bin" / "mattermost"), "version", *flag], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp)}, cwd=tmp)
    if f"Version: {version}" not in out.stdout:
        raise BuildError(f"the build of {version} says it is: {out.stdout.strip() or out.stderr.strip()}")
    (tmp / "build.json").write_text(json.dumps(_stamp(version)) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    log(f"real Mattermost {version} built in {time.time() - started:.0f} s -> {dest}")
    return dest


def _write_default_config(version: str, source: Path, dest: Path, env: dict) -> None:
    """config/config.json as release.mk makes it: Mattermost's config_generator (model.Config
    with SetDefaults), then the same edits ("Disable developer settings", "Reset email")."""
    (dest / "config").mkdir()
    generator = dest / "config_generator"
    _go(version, "build", "-trimpath", "-o", str(generator), f"{pins(version)['module']}/scripts/config_generator",
        env=env)
    target = dest / "config" / "config.json"
    subprocess.run([str(generator)], env={**env, "OUTPUT_CONFIG": str(target)}, check=True, capture_output=True)
    generator.unlink()
    text = target.read_text()
    for old, new in [('"ConsoleLevel": "DEBUG"', '"ConsoleLevel": "INFO"'),
                     ('"SiteURL": "http://localhost:8065"', '"SiteURL": ""'),
                     ('"SendEmailNotifications": true,', '"SendEmailNotifications": false,'),
                     ('"FeedbackEmail": "test@example.com",', '"FeedbackEmail": "",'),
                     ('"ReplyToAddress": "test@example.com",', '"ReplyToAddress": "",'),
                     ('"SMTPServer": "localhost",', '"SMTPServer": "",'),
                     ('"SMTPPort": "2500",', '"SMTPPort": "",')]:
        text = text.replace(old, new)
    target.write_text(text)


def main(argv: list[str]) -> int:
    wanted = argv or versions()
    try:
        for version in wanted:
            print(ensure_built(version))
    except BuildError as e:
        print(f"BUILD FAILED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
