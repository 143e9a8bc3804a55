"""The deploy's server side: the steps that must happen ON the server, atomically (read
the whole state in one round trip, verify a release before unpacking it, merge
config.json, upgrade with a way back, back up, restore, patch night, housekeeping).

Standard library only, so it runs on a fresh Debian before anything is installed. One
module per concern, mirroring tasks/ on the workstation side; `main.py` is the command
line. `bundle.py` builds the package into ONE file (deterministic: same sources, same
bytes), which the state fact sends inline and the base task installs as
/usr/local/lib/mattermost-deploy/mmhelper.py.
"""
