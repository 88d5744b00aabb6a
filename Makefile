# Every target installs what it needs first: a fresh machine needs only Python 3.11, Node 20 and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
CDK := npx --no-install cdk
export CDK_DISABLE_VERSION_CHECK := 1
export CDK_DISABLE_CLI_TELEMETRY := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PIP_DISABLE_PIP_VERSION_CHECK := 1

MODEL ?= anthropic.claude-3-haiku-20240307-v1:0

.PHONY: install demo test test-fast docs lint format typecheck synth synth-all-options bench deploy destroy smoke emulator clean diagram example-synth

install: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==26.3
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## demo: run the batch pipeline locally on 300 sample rows (2 Bedrock jobs, emulated)
demo: install
	rm -rf demo-output
	$(PY) -m cli batch --input samples/topics.csv --model-id $(MODEL) --prompt-id joke_about_topic \
		--max-records-per-job 150 --output demo-output
	$(PY) -c "import glob, pyarrow.parquet as pq; t = pq.read_table(sorted(glob.glob('demo-output/*.parquet'))); \
		print('first rows of', t.num_rows, '(the emulator echoes each prompt):'); \
		[print('  ', r['topic'], '->', r['response']) for r in t.slice(0, 3).to_pylist()]"
	$(PY) -m cli gateway --ask "Streaming answers arrive word by word through the gateway" --bot router-claude

## test: every test layer (unit, functional, infra, e2e) and the docs build, offline and Docker-free
test: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy .
	$(MAKE) --no-print-directory docs
	$(PY) -m pytest -n 2 --dist loadfile

## docs: the documentation site (mkdocs.yml, docs/) into site/; --strict: a broken link or anchor fails the build
docs: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site 2>&1 | grep -v '^INFO' ; exit $${PIPESTATUS[0]}

## test-fast: the quick loop (skips the slow end-to-end runs)
test-fast: install
	$(PY) -m pytest -n 2 --dist loadfile -m "not slow"

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy .

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

synth: install
	$(CDK) synth --no-notices -q $(CONTEXT)
	$(VENV)/bin/cfn-lint --ignore-checks W3005 -- cdk.out/*.template.json

## synth-all-options: synth with every security and operations option on (cdk-nag and cfn-lint must pass)
ALL_OPTIONS := -c kmsKey=create -c 'batchVpc={"create": true}' -c alarmEmail=ops@example.com \
	-c modelInvocationLogging=true \
	-c 'tags={"project": "bedrock-genai", "owner": "platform", "cost-centre": "cc-1234", "environment": "dev"}'
synth-all-options: CONTEXT = $(ALL_OPTIONS)
synth-all-options: synth

## bench: batch (every input path), memory, gateway and team-key benchmarks on a quiet machine; records bench/results.json and the pages generated from it
bench: install
	$(PY) -m bench

deploy: install
	$(CDK) deploy --no-notices --all

destroy: install
	$(CDK) destroy --no-notices --all

## smoke: after `make deploy`, check the deployment end to end at minimal cost (SMOKE_TARGET=local: the local runtime)
SMOKE_TARGET ?= aws
smoke: install
	$(PY) -m cli smoke --target $(SMOKE_TARGET)

## diagram: regenerate docs/architecture.svg (the architecture diagram of the README and the docs) from docs/diagram.py
diagram: install
	$(PY) docs/diagram.py

## example-synth: synthesize examples/extend_app (a team's stack reusing the constructs), bundling skipped
example-synth: install
	cd examples/extend_app && BATCH_SKIP_BUNDLING=1 npx --no-install cdk synth --no-notices -q

emulator: install
	$(PY) -m cli emulator --port 4010

clean:
	rm -rf cdk.out demo-output .pytest_cache .mypy_cache .ruff_cache
