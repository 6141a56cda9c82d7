# The README's two commands:  `make demo`  and  `make test`.
# Both set up a virtual environment inside the checkout first (idempotent: a second run takes seconds).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# torch's OpenMP threads spin while idle and starve what runs beside them (gunicorn, Chromium,
# other tests); passive waiting made the engine tests ~10x faster on a loaded 2-core machine.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup demo test system-deps bench lock clean audit screenshots

# The pip setup installs first (a venv's bundled pip is whatever the Python came with); the
# dependency audit checks this pin too.
PIP_VERSION := 26.3

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[all]"
	# torchattacks is a test-only peer; --no-deps keeps it from replacing our CPU torch.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt torchattacks
	touch $(STAMP)

## Main job on the embedded default data (DEMO_SERVE=0 exits instead of serving).
demo: setup
	$(BIN)/python scripts/demo.py

## Whole test suite: unit, database (SQLite + PostgreSQL), browser (Chromium).
test: setup system-deps node_modules/axe-core
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# axe-core, injected into pages by the browser tests' accessibility checks (node_modules/ is ignored).
AXE_VERSION := 4.11.0
node_modules/axe-core:
	npm install --no-save --no-audit --no-fund axe-core@$(AXE_VERSION)

system-deps:
	bash scripts/ensure-system-deps.sh

## Pinned packages against the vendored advisories (security/advisories.json); fails on a match.
audit: setup
	$(BIN)/python scripts/audit_deps.py

## PNGs of every participant page state at 1280×800 and 390×844, into docs/screens/.
screenshots: setup system-deps
	$(BIN)/python scripts/screenshots.py

bench: setup
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

## Re-pin constraints.txt from the current environment.
lock: setup
	{ echo "# Pinned versions for every install (make setup uses: pip install -c constraints.txt)."; \
	  echo "# Regenerate: make lock.  torch 2.13.0 is the CPU build that lies on these machines' disk."; \
	  $(BIN)/pip freeze --exclude-editable | sed 's/+cpu//'; } > constraints.txt

clean:
	rm -rf $(VENV) build dist *.egg-info
