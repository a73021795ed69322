# `make run` sets everything up and starts Cairn; `make test` runs the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := zstd sqlite3 age chromium fonts-noto-cjk

.PHONY: run test test-system-deps bench clean messages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.test-installed: requirements-test.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@

# The Chinese catalog: translations/zh_CN/LC_MESSAGES/messages.po is the source, compiled here.
CATALOG := translations/zh_CN/LC_MESSAGES/messages
EXTRACT_KEYWORDS := -k _l -k lazy_gettext -k N_

$(CATALOG).mo: $(CATALOG).po $(VENV)/.installed
	$(BIN)/pybabel compile --statistics -i $(CATALOG).po -o $@ -l zh_CN

# After changing words in the code or the templates: collect them, then translate the new
# entries in the .po (docs/glossary.md has the terms).
messages: $(VENV)/.installed
	$(BIN)/pybabel extract -F babel.cfg $(EXTRACT_KEYWORDS) --no-wrap --sort-by-file -o translations/messages.pot .
	$(BIN)/pybabel update -i translations/messages.pot -d translations -l zh_CN --no-wrap --ignore-obsolete

run: $(VENV)/.installed $(CATALOG).mo
	$(BIN)/python -m webapp.supervisor

# The browser tests drive Debian's chromium; zstd, sqlite3 and age are the standard tools the tests
# open archives with. Installed only when missing, and only when we may (root).
test-system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing system packages:$$missing (install them with apt-get)"; fi; \
	fi

# The layer contracts (.importlinter) are checked first: a forbidden import fails the build.
test: $(VENV)/.test-installed test-system-deps $(CATALOG).mo
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(BIN)/python bench/backup.py

clean:
	rm -rf $(VENV) .pytest_cache
