# peerlab: every target sets itself up from a clean clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ONLY   ?=

.PHONY: demo test bench lint clean deps screenshots

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q -e '.[test,dev]'
	touch $(STAMP)

# Debian packages the tests and benchmarks use, installed only when missing.
deps:
	@missing=""; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	command -v sha1sum >/dev/null 2>&1 || missing="$$missing coreutils"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v runuser >/dev/null 2>&1 || missing="$$missing util-linux"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -d /usr/share/fonts/truetype/dejavu ] || missing="$$missing fonts-dejavu-core"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

demo: $(STAMP)
	$(VENV)/bin/peerlab demo

test: $(STAMP) deps
	$(PY) -m pytest -q -p no:cacheprovider

# The web page's browser tests, saving their screenshots over the tracked
# docs/screenshots/*.png (a plain test run writes them to a temporary folder).
screenshots: $(STAMP) deps
	PEERLAB_SCREENSHOTS=$(CURDIR)/docs/screenshots $(PY) -m pytest -q -p no:cacheprovider \
	  tests/web/test_web_browser.py tests/web/test_web_torrents.py tests/web/test_web_rich_monitor.py

bench: $(STAMP) deps
	$(PY) benchmarks/run.py $(if $(ONLY),--only $(ONLY),)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build src/*.egg-info benchmarks/latest.json
