# SimpleAMS provisioning. `make help` lists the targets.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# The local mail sink `make up` starts when SMTP_URL is not set.
MAIL_PORT ?= 1025
# Without DATABASE_URL / REDIS_URL, `make up` runs PostgreSQL and Redis from wheels
# in the dev lock (dev/), with their data in .data/, on these ports of 127.0.0.1.
PG_PORT ?= 15432
REDIS_PORT ?= 16379
# pytest processes for `make test` (pytest-xdist); TEST_PROCESSES=0 runs in this one.
TEST_PROCESSES ?= 3

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'

# Every package comes from the lock, by version and hash (docs/dependencies.md);
# the project itself is then installed without resolving anything.
$(VENV)/.install-stamp: requirements/dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --only-binary :all: -r requirements/dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

.PHONY: install
install: $(VENV)/.install-stamp ## Create .venv and install the project with its dev tools, exactly as locked

# The one way versions change: re-resolve pyproject.toml (and requirements/build.in)
# to the newest versions they allow, then the runtime set within what dev tested.
LOCK := $(VENV)/bin/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 \
	--custom-compile-command 'make lock'

# `make lock UPGRADE=` locks a dependency just added to pyproject.toml and keeps
# every other version as it is.
UPGRADE ?= --upgrade

.PHONY: lock
lock: install ## Re-resolve and upgrade every dependency into requirements/*.txt (then make test)
	$(LOCK) $(UPGRADE) --extra dev pyproject.toml requirements/build.in -o requirements/dev.txt
	$(LOCK) --constraint requirements/dev.txt pyproject.toml requirements/build.in \
	  -o requirements/runtime.txt
	$(MAKE) install

.PHONY: up
up: install ## Bring everything up: database and broker, migrations, demo tenant, then web, relay, worker, beat, Flower (and a mail sink without SMTP_URL)
	@$(PY) -m dev up --pg-port $(PG_PORT) --redis-port $(REDIS_PORT) -- \
	  $(MAKE) --no-print-directory up-processes

# What `make up` runs once DATABASE_URL and REDIS_URL are set. honcho replaces
# the shell (exec), so that a SIGTERM make passes on reaches it.
.PHONY: up-processes
up-processes:
	$(VENV)/bin/simpleams migrate
	@# Without an SMTP_URL, a local mail sink (aiosmtpd) takes the notifications and
	@# prints them here, so that leaver alerts and digests work from the first run.
	@# It runs beside the Procfile's processes, never in production.
	@{ cat Procfile; echo "mail: python -u -m aiosmtpd -n -l 127.0.0.1:$(MAIL_PORT)"; } > $(VENV)/Procfile.up; \
	  if [ -z "$${SMTP_URL:-}" ]; then \
	    SMTP_URL=smtp://127.0.0.1:$(MAIL_PORT); sink=mail; mail="no SMTP_URL set; notifications are printed below (mail.1)"; \
	  else sink=; mail="$${SMTP_URL%%://*}://… (SMTP_URL)"; fi; \
	  FLOWER_BASIC_AUTH=$${FLOWER_BASIC_AUTH:-ops:$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(12))')}; \
	  echo; $(VENV)/bin/simpleams demo; \
	  echo "Gateway: http://127.0.0.1:$(PORT)/scim/v2 (send Host: demo.simpleams.co.uk or use the token alone)"; \
	  echo "Flower:  http://127.0.0.1:$${FLOWER_PORT:-5555}  (basic auth $$FLOWER_BASIC_AUTH)"; \
	  echo "Mail:    $$mail"; echo; \
	  FLOWER_BASIC_AUTH=$$FLOWER_BASIC_AUTH SMTP_URL=$$SMTP_URL PATH=$(CURDIR)/$(VENV)/bin:$$PATH \
	  exec $(VENV)/bin/honcho -f $(VENV)/Procfile.up -d $(CURDIR) start -p $(PORT) web worker relay beat flower $$sink

.PHONY: browser
browser: ## Install Debian's chromium for the browser tests, if it is missing
	bash .ci/browser

.PHONY: test
test: install browser ## Run the whole test suite: ruff, mypy --strict, then pytest against real services
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist worksteal

.PHONY: format
format: install ## Format and autofix
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .
