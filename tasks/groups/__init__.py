"""The settings, as typed groups: one small module per concern (e-mail, notices, off-server
backups, SSH access, Calls, patch night and unattended upgrades, the release), each a frozen
dataclass and the function that builds and checks it from host data (`get(key)`, the
defaults in group_data/all.py) and the workstation's environment. tasks/settings.py composes
them; the files store (tasks/files.py), the database's place (tasks/dbplace.py) and the
migration (tasks/db_migrate.py) are groups built the same way beside the code that uses them.
"""
