# qcwx — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 5000
# Links made outside a request (alert workers, the CLI) use this; pages use the request's host
# in development (qcwx.web.urls), so PORT=8000 make run, a phone on the LAN or a tunnel all work.
run worker beat: export QCWX_BASE_URL ?= http://127.0.0.1:$(PORT)
FLASK := $(PY) -m flask --app wsgi
PYTHON ?= python3

.PHONY: bench-deps run test install install-test assets browser-deps db seed worker beat fake-wechat bench lint clean

run: install assets db  ## set up everything and serve the demo at http://127.0.0.1:$(PORT)
	$(FLASK) seed-demo --if-empty
	$(FLASK) peer rebuild
	@# The fake WeChat first: the regional report is announced through it.
	$(FLASK) fake-wechat --background
	@# Last month's evaluation reports (with the demo's expert comment), then the regional
	@# report, are published in the background (about a minute for the demo's 32 labs, one
	@# commit per lab): the site is served meanwhile.
	mkdir -p instance && (($(FLASK) reports publish && $(FLASK) seed-demo-comment; \
		$(FLASK) reports publish-region) > instance/reports-publish.log 2>&1 &)
	trap '$(FLASK) fake-wechat --stop; trap - EXIT INT TERM' EXIT INT TERM; $(FLASK) run --host 127.0.0.1 --port $(PORT)

# The suite spread over one process per core (pytest-xdist; TEST_PROCESSES=1 runs it in one).
# A group of tests that must not run side by side stays in one process (tests/conftest.py).
TEST_PROCESSES ?= auto
test: install-test assets browser-deps  ## install test requirements and run the whole suite
	$(PY) -m pytest $(if $(filter 1,$(TEST_PROCESSES)),,-n $(TEST_PROCESSES) --dist loadgroup)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# Front-end packages come from npm (package.json + lockfile) and are served from static/vendor.
static/vendor/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p static/vendor
	cp node_modules/echarts/dist/echarts.min.js static/vendor/echarts.min.js
	cp node_modules/weui/dist/style/weui.min.css static/vendor/weui.min.css
	{ echo '(function(){var module={exports:{}};'; cat node_modules/weixin-js-sdk/index.js; echo 'window.wx = window.jWeixin = module.exports;})();'; } > static/vendor/jweixin.js
	touch $@

# ECharts as the pages use it: only the chart types and components of qcwx/charts/ (the entry
# file lists them), tree-shaken by esbuild into one minified script (about 0.6 MB instead of
# 1.1 MB; ~182 KB over brotli instead of ~300 KB). Every page with charts loads it
# (qcwx.charts.ECHARTS_SCRIPT_PATH); the full build above is kept for the tests that serve or
# compare against it (tests/integration/test_compression.py, tests/reports/test_pdf.py).
ECHARTS_BUNDLE_FLAGS := --bundle --minify --format=iife --global-name=echarts --target=es5 \
	--legal-comments=none --log-level=warning \
	--banner:js='/*! Apache ECharts (Apache-2.0, see node_modules/echarts/LICENSE), partial build: static/src/echarts-qcwx.js */'
static/vendor/echarts-qcwx.min.js: static/src/echarts-qcwx.js static/vendor/.stamp
	node_modules/.bin/esbuild $< $(ECHARTS_BUNDLE_FLAGS) --define:process.env.NODE_ENV='"production"' --outfile=$@

# The same ECharts plus its SVG renderer, for the server: qcwx/charts/ssr.py loads it into an
# embedded V8 (mini-racer) and inlines the first charts of a report as SVG, painted with the HTML.
static/vendor/echarts-qcwx-ssr.js: static/src/echarts-qcwx-ssr.js static/src/echarts-qcwx.js static/vendor/.stamp
	node_modules/.bin/esbuild $< $(ECHARTS_BUNDLE_FLAGS) --define:process.env.NODE_ENV='"production"' --outfile=$@

assets: static/vendor/.stamp static/vendor/echarts-qcwx.min.js static/vendor/echarts-qcwx-ssr.js

# Browser tests drive Debian's chromium (never a downloaded browser) and need a CJK font.
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi 'noto.*cjk' || ! command -v pdftoppm >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk poppler-utils >/dev/null) \
	      || echo "warning: could not install chromium; browser tests will be skipped"; \
	  else echo "note: install Debian's chromium and fonts-noto-cjk to run the browser tests"; fi; \
	fi

db: install  ## apply the Alembic migrations
	$(FLASK) db upgrade

seed: db
	$(FLASK) seed-demo

worker: install  ## a Celery worker (needs QCWX_REDIS_URL)
	$(VENV)/bin/celery -A workers.celery_app worker -P solo -l info

beat: install
	$(VENV)/bin/celery -A workers.celery_app beat -l info

fake-wechat: install
	$(FLASK) fake-wechat

bench-deps:  ## wrk: the load bench's /healthz baseline not bound by the Python client
	@command -v wrk >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null || echo "note: could not install wrk"; \
	  else echo "note: install Debian's wrk for the load bench's baseline"; fi; }

bench: install-test assets browser-deps bench-deps
	for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: install-test
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) node_modules static/vendor instance/*.sqlite3
