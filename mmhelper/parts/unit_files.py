"""How a systemd unit runs Mattermost, read as systemd and Mattermost read it (pure
functions, tested on the workstation): unit files with their drop-ins, ExecStart= forms,
Environment=/EnvironmentFile=, the config flag and MM_CONFIG, and the config file a relative
path means.
"""

import os
import re
import shlex

# The server binary's name: `mattermost` (`platform` before Mattermost 4.0).
SERVER_BINARIES = ("mattermost", "platform")

def unit_lines(text):
    """(section, key, value) of a unit file, continuation lines joined, comments dropped."""
    out, section, pending = [], None, ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if sep:
            out.append((section, key.strip(), value.strip()))
    if pending.strip():
        key, sep, value = pending.partition("=")
        if sep:
            out.append((section, key.strip(), value.strip()))
    return out


def environment_words(value):
    """Environment= assignments (systemd splits on spaces, honouring quotes)."""
    try:
        words = shlex.split(value)
    except ValueError:
        words = value.split()
    return dict(word.split("=", 1) for word in words if "=" in word)


def service_settings(texts):
    """What systemd runs, from the unit file and its drop-ins in order: an empty
    ExecStart= resets the list, later values of the other keys win, Environment= adds."""
    out = {"exec_start": [], "working_directory": None, "environment": {}, "environment_files": [],
           "user": None}
    for text in texts:
        for section, key, value in unit_lines(text):
            if section != "Service":
                continue
            if key == "ExecStart":
                out["exec_start"] = [] if not value else [*out["exec_start"], value]
            elif key == "WorkingDirectory":
                out["working_directory"] = value or None
            elif key == "Environment":
                out["environment"] = {} if not value else {**out["environment"], **environment_words(value)}
            elif key == "EnvironmentFile":
                out["environment_files"] = [] if not value else [*out["environment_files"], value]
            elif key == "User":
                out["user"] = value or None
    return out


def environment_file(text):
    """KEY=VALUE lines of an EnvironmentFile (quotes stripped; comments and blank lines skipped)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if key.startswith("export "):
            key = key[len("export "):].strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key] = value
    return out


def exec_argv(line):
    """An ExecStart= line as (executable, arguments): systemd's prefixes (@-:+!) dropped
    (with @ the second word is argv[0], not an argument)."""
    prefix = re.match(r"^[@\-:+!]*", line).group(0)
    try:
        words = shlex.split(line[len(prefix):])
    except ValueError:
        words = line[len(prefix):].split()
    if not words:
        return None, []
    return words[0], words[2:] if "@" in prefix else words[1:]


def server_command(executable, args, working_directory=None):
    """(binary, its arguments, the folder it runs in) when the command runs a Mattermost
    server binary - directly, through `env`, or in a `sh -c` line - else None."""
    if not executable:
        return None
    name = os.path.basename(executable)
    if name in SERVER_BINARIES:
        return _joined(working_directory, executable), list(args), working_directory
    if name == "env":
        words = [w for w in args if "=" not in w and not w.startswith("-")]
        if words:
            rest = args[args.index(words[0]) + 1:]
            return server_command(words[0], rest, working_directory)
        return None
    if name in ("sh", "bash", "dash") and len(args) >= 2 and args[0] == "-c":
        try:
            words = shlex.split(args[1])
        except ValueError:
            return None
        cwd = working_directory
        for i, word in enumerate(words):
            if word == "cd" and i + 1 < len(words):
                cwd = _joined(cwd, words[i + 1])
            if os.path.basename(word) in SERVER_BINARIES and (i == 0 or words[i - 1] in ("exec", "&&", ";", "nohup")):
                rest = []
                for w in words[i + 1:]:
                    if w in ("&&", ";", "||", "|"):
                        break
                    rest.append(w)
                return _joined(cwd, word), rest, cwd
    return None


def _joined(base, path):
    if not path or os.path.isabs(path) or not base:
        return path
    return os.path.normpath(os.path.join(base, path))


def config_flag(args):
    """The --config/-c value given on the command line (cobra/pflag forms), else None."""
    for i, arg in enumerate(args):
        if arg in ("-c", "--config"):
            return args[i + 1] if i + 1 < len(args) else None
        if arg.startswith("--config="):
            return arg[len("--config="):]
        if arg.startswith("-c=") and len(arg) > 3:
            return arg[3:]
        if arg.startswith("-c") and len(arg) > 2 and not arg.startswith("--"):
            return arg[2:]
    return None


def config_dsn(args, environment):
    """Where Mattermost reads its config: the flag, else MM_CONFIG, else "config.json"
    (getConfigDSN in cmd/mattermost/commands/utils.go of mattermost-server v5; the same in v8+)."""
    return config_flag(args) or environment.get("MM_CONFIG") or "config.json"


def config_store_kind(dsn):
    """"database" for a config kept in the database (config.IsDatabaseDSN: mysql:// or
    postgres://), else "file"."""
    return "database" if dsn.startswith(("mysql://", "postgres://")) else "file"


SEARCH = (".", "..", "../..", "../../..")


def resolve_config_file(dsn, cwd, binary, exists):
    """The config file a relative path means, as Mattermost resolves it (config/file.go
    resolveConfigFilePath with utils/fileutils findPath): config/<p> near the working folder,
    then near the binary; then <p> itself in either; then <the config folder found>/<p>.
    exists(path, kind) answers for "file", "dir" or "any"."""
    if os.path.isabs(dsn):
        return dsn
    cwd = cwd or "/"
    binary_dir = os.path.dirname(binary) if binary and os.path.isabs(binary) else None

    def find(path, bases, kind):
        roots = [os.path.join(cwd, b) for b in bases] + ([os.path.join(binary_dir, b) for b in bases]
                                                          if binary_dir else [])
        for root in roots:
            found = os.path.normpath(os.path.join(root, path))
            if exists(found, kind):
                return found
        return None

    return (find(os.path.join("config", dsn), SEARCH, "file") or find(dsn, (".",), "any")
            or (lambda folder: os.path.join(folder, dsn) if folder else None)(find("config", SEARCH, "dir")))


def install_dir_of(binary):
    """The install folder of a server binary in Mattermost's tarball layout (<dir>/bin/mattermost)."""
    folder = os.path.dirname(binary or "")
    return os.path.dirname(folder) if os.path.basename(folder) == "bin" else folder
