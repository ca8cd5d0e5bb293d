# metric-lab: the kit's commands. `make setup demo` sets up and runs the main job; `make test` tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Use the verified raw files beside the checkout when no data root is given (development and CI).
SHARED_DATA := $(abspath ../shared/datasets)
export LABTOOLS_DATA ?= $(if $(wildcard $(SHARED_DATA)/MNIST/raw),$(SHARED_DATA),)
LAB ?= lab1_retrieval
SUBMISSIONS ?= submissions
OUT ?= out

.PHONY: setup demo test test-cards release grade notebooks

setup: $(VENV)/.installed
	@command -v bwrap >/dev/null || echo "NOTE: bubblewrap (bwrap) is missing: 'python -m autograder grade' needs it to" \
	  "sandbox student code. Install it: sudo apt-get install bubblewrap (Debian/Ubuntu), sudo dnf install bubblewrap (Fedora)."

$(VENV)/.installed: requirements.txt benchmarks/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt -c requirements.txt
	# the build backend, pinned: venvs of Python >= 3.12 come without setuptools
	$(BIN)/python -m pip install --quiet setuptools==84.2.1
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

demo: setup
	$(BIN)/python -m autograder demo --out $(OUT)/demo

test: setup
	LABTOOLS_FAST=1 $(BIN)/python -m pytest -p no:cacheprovider --durations=40 tests
	LABTOOLS_FAST=1 $(BIN)/python -m pytest -p no:cacheprovider --nbval-lax autograder/course/source

# every shipped card measured again, Lab 4's runs on all classes and MNIST held-out runs included
# (tests/labs/test_lab4_study.py)
test-cards: setup
	LABTOOLS_ALL_CARDS=1 $(BIN)/python -m pytest -p no:cacheprovider tests/labs -k remeasurement

notebooks: setup
	$(BIN)/python -m autograder.notebooks build
	$(BIN)/python -m autograder.notebooks release

release: setup
	$(BIN)/python -m autograder release --out $(OUT)/release

grade: setup
	$(BIN)/python -m autograder grade $(LAB) $(SUBMISSIONS) --out $(OUT)/grades/$(LAB)

# ----------------------------------------------------------------------------- the course on this machine
# `make course [STUDENTS=3] [PORT=8765]` (root): JupyterHub on 127.0.0.1 with the instructor's nbgrader
# course and student logins (autograder/hub/); `make course-down` stops it. STUDENTS and PORT count
# only when given on the command line (a PORT in the environment is often another program's).
HUB := .hub
CHP := $(HUB)/node_modules/.bin/configurable-http-proxy
COURSE_ARGS := $(if $(filter command line,$(origin STUDENTS)),--students $(STUDENTS)) \
               $(if $(filter command line,$(origin PORT)),--port $(PORT))

.PHONY: course course-down course-status course-proxy course-proxy-if-npm

course: setup course-proxy
	$(BIN)/python -m autograder course up $(COURSE_ARGS)

course-down:
	$(BIN)/python -m autograder course down

course-status:
	$(BIN)/python -m autograder course status

# the hub's proxy, configurable-http-proxy 5.3.0 (autograder/hub/package-lock.json), from npm into .hub/
course-proxy: $(CHP)

$(CHP): autograder/hub/package.json autograder/hub/package-lock.json
	@command -v npm >/dev/null || { echo "make course needs node and npm for the hub's proxy" \
	  "(configurable-http-proxy): install them, e.g. sudo apt-get install nodejs npm"; exit 1; }
	mkdir -p $(HUB)
	echo '*' > $(HUB)/.gitignore
	cp autograder/hub/package.json autograder/hub/package-lock.json $(HUB)/
	cd $(HUB) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# make test installs the proxy too where npm is (tests/test_course_hub.py skips without it)
test: course-proxy-if-npm

course-proxy-if-npm:
	@if ! command -v npm >/dev/null; then \
	  echo "NOTE: npm is missing: tests/test_course_hub.py will be skipped (make course needs node and npm)."; \
	elif ! $(MAKE) --no-print-directory course-proxy; then \
	  echo "NOTE: the proxy's npm install failed: tests/test_course_hub.py will be skipped."; fi
