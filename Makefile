# The operator's verbs. Production by default; TARGET=<name> picks a local test server.
#   make demo            local test server + stand-in upstream, deploy, print URL and version
#   make diff            what a deploy would change (dry run, file diffs, no secrets)
#   make deploy          apply (asks before changing; YES=1 skips the question)
#   make test            unit tests and end-to-end tests on real Debian 12 containers
#   make bench           benchmarks (bench/), printing numbers
#   make lint / clean / setup

VENV   := .venv
PY     := $(VENV)/bin/python
export MMDEPLOY_TARGET := $(TARGET)
YESFLAG := $(if $(filter 1 yes true,$(YES)),-y,)

.PHONY: setup prereqs demo diff deploy test unit e2e lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

prereqs:
	@sh tests/prereqs.sh

demo: setup prereqs
	$(PY) -m tests.testhost up demo --ssh-port 2222 --https-port 8443
	MMDEPLOY_TARGET=demo $(PY) -m tasks.run -y
	@$(PY) -m tests.testhost report demo

diff: setup
	$(PY) -m tasks.run --dry --diff

deploy: setup
	$(PY) -m tasks.run $(YESFLAG)

test: setup prereqs
	$(PY) -m pytest tests

unit: setup
	$(PY) -m pytest tests/unit

e2e: setup prereqs
	$(PY) -m pytest tests/e2e

lint: setup
	$(VENV)/bin/ruff check .

bench: setup prereqs
	$(PY) -m bench.converge

clean: setup
	$(PY) -m tests.testhost clean
