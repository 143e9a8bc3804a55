# The operator's verbs. Production by default; TARGET=<name> picks a local test server.
#   make demo            local test server + stand-in upstream, deploy, print URL and version
#   make diff            what a deploy would change (dry run, file diffs, no secrets)
#   make deploy          apply (asks before changing; YES=1 skips the question)
#   make upgrade         deploy, and fail when the version policy's upgrade is refused
#   make status          one row per server: versions, action, last backup (JSON=1 for monitoring)
#   make security-report one page per server: settings against a baseline, ports, TLS, bans, lynis (JSON=1, FRESH=1)
#   make backup | fetch-backup [BACKUP=name] | restore BACKUP=name | rollback | unhold
#   make rebuild [BACKUP=name]     restore from the off-server repository alone (a lost server, rebuilt)
#   make restore-drill TARGET=x    the same on a scratch server, checked against the backup (DRILL_REPLACE=1)
#   make channels | users [JSON=1]                 reports; make archive-stale | retention [APPLY=1]
#   make offboard USER=u | erase USER=u | export  people and data portability
#   make patch-plan      what patch night would do, changing nothing
#   make patch-night     OS updates, restarts/reboot, Mattermost upgrade, report (YES=1, BREAK_LOCK=1)
#   make os-upgrade-plan what the next Debian release upgrade (11 -> 12, 12 -> 13) would do, and whether it is safe
#   make os-upgrade      Debian 11 -> 12 -> 13, one release at a time, Mattermost and its data intact (YES=1, BREAK_LOCK=1)
#   make upgrade-plan    the Mattermost upgrade the policy wants, hop by hop: long migrations, the checks before each hop
#   make upgrade-rehearsal SCRATCH=x   the same hops on a harmless copy of production's newest backup, timed and checked
#   make db-migrate-plan what moving an old server's MySQL/MariaDB database to PostgreSQL would do (changes nothing)
#   make db-migrate      move it: backup, schema, copy, every table checked, switch (YES=1); resumable
#   make db-migrate-rollback   back to the untouched MySQL database (DISCARD=1: lose posts written since)
#   make move-files-plan | move-files [BACK=1]   uploaded files into the bucket (BACK=1: back to the data folder)
#   make move-database-plan | move-database       the database to the database server in db_host (logical replication)
#   make move-database-rollback [DISCARD=1]        back to this server's database, untouched since the move
#   make test            unit tests, and end-to-end tests of real Mattermost (built from source) on real Debian 12 containers
#   make bench           benchmarks (bench/), printing numbers
#   make lint / clean / setup

VENV   := .venv
PY     := $(VENV)/bin/python
# Go builds real Mattermost for the tests (tests/realmm); the official Go install lives here.
export PATH := $(PATH):/usr/local/go/bin
TARGET ?= $(MMDEPLOY_TARGET)
# The local test servers' Debian release: trixie (13, default) or bookworm (12).
DISTRO ?= $(MMDEPLOY_DISTRO)
export MMDEPLOY_DISTRO := $(DISTRO)
export MMDEPLOY_TARGET := $(TARGET)
# USER is the login name in every shell: make's USER= on the command line wins over it.
USER_ := $(if $(filter command line,$(origin USER)),$(USER),)
YESFLAG := $(if $(filter 1 yes true,$(YES)),-y,)

.PHONY: setup prereqs mattermost-builds demo diff deploy upgrade status security-report backup fetch-backup restore rollback rebuild \
	restore-drill unhold \
	patch-plan patch-night os-upgrade-plan os-upgrade upgrade-plan upgrade-rehearsal db-migrate-plan db-migrate db-migrate-rollback move-files-plan move-files move-database-plan move-database move-database-rollback channels users archive-stale offboard erase export retention \
	test unit e2e lint bench bench-upgrade bench-scale bench-security bench-old bench-files bench-move-db bench-rehearsal bench-bullseye clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

prereqs:
	@sh tests/prereqs.sh

demo: setup prereqs
	$(PY) -m tests.testhost up demo --ssh-port 2222 --https-port 8443 --official auto
	MMDEPLOY_TARGET=demo $(PY) -m tasks.run -y
	@$(PY) -m tests.testhost report demo

diff: setup
	$(PY) -m tasks.run --dry --diff

deploy: setup
	$(PY) -m tasks.run $(YESFLAG)

upgrade: setup
	$(PY) -m tasks.run $(YESFLAG) --data mattermost_upgrade_required=true

status: setup
	$(PY) -m verbs.status $(if $(filter 1 yes true,$(JSON)),--json,)

security-report: setup
	$(PY) -m verbs.security_report $(if $(filter 1 yes true,$(JSON)),--json,) $(if $(filter 1 yes true,$(FRESH)),--fresh,)

backup: setup
	$(PY) -m tasks.run verbs/backup.py -y

fetch-backup: setup
	$(PY) -m verbs.fetch_backup $(BACKUP)

restore: setup
	@test -n "$(BACKUP)" || { echo "say which: make restore BACKUP=<name> (or BACKUP=latest); see make status"; exit 2; }
	$(PY) -m tasks.run verbs/restore.py $(YESFLAG) --data restore_backup=$(BACKUP)

rollback: setup
	$(PY) -m tasks.run verbs/rollback.py $(YESFLAG)

rebuild: setup
	$(PY) -m tasks.run verbs/rebuild.py $(YESFLAG) $(if $(BACKUP),--data restore_backup=$(BACKUP),)

restore-drill: setup
	@test -n "$(TARGET)" || { echo "name the scratch server: make restore-drill TARGET=<local test server>"; exit 2; }
	$(PY) -m tasks.run verbs/rebuild.py -y --data restore_drill=true $(if $(BACKUP),--data restore_backup=$(BACKUP),) \
		$(if $(filter 1 yes true,$(DRILL_REPLACE)),--data drill_replace=true,)

unhold: setup
	$(PY) -m tasks.run verbs/unhold.py -y

channels users: setup
	$(PY) -m verbs.report $@ $(if $(filter 1 yes true,$(JSON)),--json,)

archive-stale: setup
	$(PY) -m tasks.run verbs/archive_stale.py $(YESFLAG)

offboard: setup
	@test -n "$(USER_)" || { echo "say who: make offboard USER=<username>"; exit 2; }
	$(PY) -m tasks.run verbs/offboard.py $(YESFLAG) --data offboard_user=$(USER_)

erase: setup
	@test -n "$(USER_)" || { echo "say who: make erase USER=<username>"; exit 2; }
	@c="$(CONFIRM)"; if [ -z "$$c" ]; then printf 'Erasing %s is permanent. Type the username to confirm: ' "$(USER_)"; \
		read c; fi; $(PY) -m tasks.run verbs/erase.py -y --data erase_user=$(USER_) --data "erase_confirmed=$$c"

export: setup
	$(PY) -m verbs.export

retention: setup
	$(PY) -m tasks.run verbs/retention.py $(if $(filter 1 yes true,$(APPLY)),$(YESFLAG) --data retention_apply=true,-y)

patch-plan: setup
	$(PY) -m verbs.patch_plan

patch-night: setup
	$(PY) -m tasks.run verbs/patch_night.py $(YESFLAG) --fail-percent 0 \
		$(if $(filter 1 yes true,$(BREAK_LOCK)),--data patch_break_lock=true,)

upgrade-rehearsal: setup
	@test -n "$(SCRATCH)" || { echo "name the scratch server: make upgrade-rehearsal SCRATCH=<server in the inventory>"; exit 2; }
	$(PY) -m verbs.rehearsal $(SCRATCH)

os-upgrade-plan: setup
	$(PY) -m verbs.os_upgrade_plan

# One Debian release per run (Debian supports no skip): 11 -> 12, then 12 -> 13; on 13 the last run has nothing to do.
os-upgrade: setup
	@for release in next then-newest; do \
		$(PY) -m tasks.run verbs/os_upgrade.py $(YESFLAG) \
			$(if $(filter 1 yes true,$(BREAK_LOCK)),--data patch_break_lock=true,) || exit $$?; \
	done

upgrade-plan: setup
	$(PY) -m verbs.upgrade_plan $(if $(filter 1 yes true,$(JSON)),--json,)

# The long jobs (verbs/jobs.py): the plan, the run (or its continuation), the way back.
is_set = $(filter 1 yes true,$(1))
JSONFLAG := $(if $(call is_set,$(JSON)),--json,)
job_plan = $(PY) -m verbs.job_plan $(1) $(JSONFLAG)
job_run = $(PY) -m tasks.run verbs/job.py $(YESFLAG) --data job=$(1)
job_back = $(call job_run,$(1)) --data job_action=rollback $(if $(call is_set,$(DISCARD)),--data discard=true,)

db-migrate-plan: setup
	$(call job_plan,db-migrate)

db-migrate: setup
	$(call job_run,db-migrate)

db-migrate-rollback: setup
	$(call job_back,db-migrate)

move-files-plan: setup
	$(call job_plan,move-files) $(if $(call is_set,$(BACK)),--back,)

move-files: setup
	$(call job_run,move-files) $(if $(call is_set,$(BACK)),--data move_back=true,)

move-database-plan: setup
	$(call job_plan,move-database)

move-database: setup
	$(call job_run,move-database)

move-database-rollback: setup
	$(call job_back,move-database)

# The end-to-end stories run side by side (pytest-xdist; tests/e2e/conftest.py keeps each story
# on one worker, longest first): most of their time is waiting on containers, apt and systemd.
TEST_WORKERS ?= 4
test: setup prereqs mattermost-builds
	$(PY) -m pytest -n $(TEST_WORKERS) --dist load --durations=30

# Real Mattermost (server and mmctl) built from its Go module, cached in .cache/realmm.
mattermost-builds: setup
	$(PY) -m tests.realmm.build

unit: setup
	$(PY) -m pytest tests/unit mmhelper

e2e: setup prereqs mattermost-builds
	$(PY) -m pytest -n $(TEST_WORKERS) --dist load tests/e2e

lint: setup
	$(VENV)/bin/ruff check .

bench: setup prereqs
	$(PY) -m bench.converge
	$(PY) -m bench.upgrade_downtime
	$(PY) -m bench.security

bench-security: setup prereqs
	$(PY) -m bench.security

bench-scale: setup prereqs mattermost-builds
	$(PY) -m bench.scale

bench-files: setup prereqs mattermost-builds
	$(PY) -m bench.files_bucket

bench-rehearsal: setup prereqs mattermost-builds
	$(PY) -m bench.rehearsal

bench-move-db: setup prereqs mattermost-builds
	$(PY) -m bench.move_database

bench-old: setup prereqs mattermost-builds
	$(PY) -m bench.old_server

bench-bullseye: setup prereqs mattermost-builds
	$(PY) -m bench.bullseye

bench-upgrade: setup prereqs
	$(PY) -m bench.upgrade_downtime

clean: setup
	$(PY) -m tests.testhost clean
