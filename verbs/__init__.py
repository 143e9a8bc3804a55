"""The operator's verbs beyond converging: backup, restore, rollback, unhold (pyinfra
deploy files, run through tasks.run), status and fetch-backup (workstation scripts)."""

# pyinfra runs on gevent: patch the standard library before anything (requests, ssl) loads it.
from gevent import monkey

monkey.patch_all()
