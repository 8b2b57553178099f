# coinpredict: the only two commands a newcomer needs are `make demo` and `make test`.
# Each installs what it needs (apt packages when run as root, the venv, pip packages).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
APT_PACKAGES := influxdb nginx faketime chromium
PYTEST_ARGS ?=

.PHONY: setup system-packages test lint bench soak soak-plot drills demo demo-stop install-systemd install-nginx clean

# The bytecode of the editable install is compiled here, as pip does for an installed package: the
# units set PYTHONDONTWRITEBYTECODE=1, so otherwise every run of every timer compiles it again.
setup: system-packages $(STAMP)
	@$(BIN)/python -m compileall -q coinpredict

# Debian/Ubuntu packages: influxd (tests and demo), nginx (tests and demo), faketime (tests),
# systemd-analyze (unit checks), python3-venv (the venv), chromium (the browser tests of the
# dashboard page, driven by Playwright; its own browser download is not used). Installed only when
# missing, without recommended packages.
system-packages:
	@missing=""; \
	command -v influxd >/dev/null 2>&1 || missing="$$missing influxdb"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v faketime >/dev/null 2>&1 || missing="$$missing faketime"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	$(PYTHON) -c "import ensurepip, venv" >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1; then \
	    echo "installing with sudo:$$missing"; \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing -- run as root or: sudo apt-get install -y --no-install-recommends$$missing" >&2; \
	    exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

test: setup
	$(BIN)/pytest -n 2 -q $(PYTEST_ARGS)

# ruff check includes C901 (McCabe complexity at most 12, pyproject.toml); format is checked, not applied
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy coinpredict

bench: setup
	@for b in bench/*.py; do case $$b in bench/soak*|bench/live_replay*) continue;; esac; \
	  echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The small VM, measured (bench/soak.py, docs/scaling.md): influxd, nginx and every timer in one
# cgroup (1 GiB, 1 CPU by default; needs root for the cgroup) for a simulated day. Takes hours;
# SOAK_ARGS narrows it, e.g. SOAK_ARGS="--hours 2 --cpus 0.25".
SOAK_OUT  ?= bench/out/soak
SOAK_ARGS ?=
BENCH_VENV := .venv-bench

soak: setup
	nice -n 10 $(BIN)/python bench/soak.py --out $(SOAK_OUT) $(SOAK_ARGS)
	$(MAKE) soak-plot SOAK_OUT=$(SOAK_OUT)

# The plot needs matplotlib, which lives in the bench's own venv, not in the product's.
soak-plot: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/soak_plot.py $(SOAK_OUT)

$(BENCH_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q matplotlib
	touch $@

# The long reliability campaign (docs/reliability.md): exits 1 when an invariant breaks, a drill
# cannot run or a crash point got no kill. `make test` runs its short set (tests/test_drills.py).
drills: setup
	$(BIN)/python bench/drills.py

demo: setup
	bash scripts/demo.sh

demo-stop:
	bash scripts/demo.sh stop

install-systemd:
	bash deploy/install-systemd.sh

install-nginx:
	bash deploy/install-nginx.sh

clean:
	rm -rf var/demo .pytest_cache .ruff_cache .mypy_cache
