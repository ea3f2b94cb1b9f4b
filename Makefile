# peerlab: every target sets itself up from a clean clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ONLY   ?=

# The compiled build (`make fast`): a second venv with a non-editable install
# whose simulation/flood modules mypyc compiled to C (setup.py, PEERLAB_MYPYC=1).
# Rebuilt whenever a file under src/peerlab, pyproject.toml or setup.py changes.
FAST       := .venv-fast
FAST_PY    := $(FAST)/bin/python
FAST_STAMP := $(FAST)/.installed
# mypyc comes with mypy; pinned to the release the compiled build was checked with.
MYPYC_REQ  := mypy==2.4.1
SOURCES    := $(shell find src/peerlab -type f -not -path '*/__pycache__/*' -not -name '*.pyc')

.PHONY: demo test bench lint clean deps screenshots fast

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
	command -v gcc >/dev/null 2>&1 || missing="$$missing gcc"; \
	[ -f "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("include"))')/Python.h" ] \
	  || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

$(FAST_PY):
	$(PYTHON) -m venv $(FAST)
	$(FAST_PY) -m pip install -q --upgrade pip

# Built in build/ (git-ignored) and installed into .venv-fast only: a compiled
# .so in src/ would shadow its .py in the editable .venv, so the recipe checks
# that none is there.
$(FAST_STAMP): $(FAST_PY) pyproject.toml setup.py $(SOURCES) | deps
	$(FAST_PY) -m pip install -q 'setuptools>=77' wheel '$(MYPYC_REQ)'
	rm -rf build
	$(FAST_PY) -m pip install -q --no-build-isolation '.[test]'
	@start=$$(date +%s); \
	PEERLAB_MYPYC=1 nice -n 5 $(FAST_PY) -m pip install -q --no-build-isolation \
	  --force-reinstall --no-deps . && \
	echo "compiled build: $$(( $$(date +%s) - start )) s"
	@if [ -n "$$(find src -name '*.so')" ]; then \
	  echo "compiled modules landed in src/:"; find src -name '*.so'; exit 1; fi
	touch $(FAST_STAMP)

fast: $(FAST_STAMP)

demo: $(STAMP)
	$(VENV)/bin/peerlab demo

test: $(STAMP) deps $(FAST_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

# The web page's browser tests, saving their screenshots over the tracked
# docs/screenshots/*.png (a plain test run writes them to a temporary folder).
screenshots: $(STAMP) deps
	PEERLAB_SCREENSHOTS=$(CURDIR)/docs/screenshots $(PY) -m pytest -q -p no:cacheprovider \
	  tests/web/test_web_browser.py tests/web/test_web_torrents.py tests/web/test_web_rich_monitor.py

# The sim benchmark also measures the compiled build; if it cannot be built
# the benchmark says so and still measures pure Python.
bench: $(STAMP) deps
	-$(MAKE) --no-print-directory fast
	$(PY) benchmarks/run.py $(if $(ONLY),--only $(ONLY),)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(FAST) build src/*.egg-info benchmarks/latest.json
