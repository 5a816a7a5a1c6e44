# Parcel-locker controller: every target sets up what it needs (venv, system packages).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
MPY     := $(BIN)/micropython
BOARD   ?= esp32-4door
HEAP    ?= 128K
export PYTHONDONTWRITEBYTECODE := 1
# Debian packages, as command=package: the broker, the pty that stands in for a USB serial port
# (provisioning tests), the browser that shows and tests the simulated locker wall, and PostgreSQL
# (the host service's tests run on it as on SQLite; tests/support/postgres.py starts a throwaway server).
SYSTEM_PACKAGES := mosquitto=mosquitto socat=socat chromium=chromium pg_ctlcluster=postgresql pdftotext=poppler-utils
# The 32-bit heap runner (bench/heap32.py): MicroPython's webassembly port under Debian's Node,
# the npm package pinned by bench/wasm/package-lock.json, installed into build/wasm.
WASM       := build/wasm
WASM_STAMP := $(WASM)/.installed

.PHONY: help system-packages wasm sim sim-terminal sim-net flash test test-fast check lint typecheck mpy bench clean distclean

help:
	@echo "make sim     the simulated locker wall in a browser: real firmware, broker, host service (no hardware)"
	@echo "make sim-terminal  one simulated locker in this terminal (offline)"
	@echo "make sim-net the terminal simulator online: broker and host service too (issue codes from another terminal)"
	@echo "make flash   provision a board: make flash BOARD=esp32-4door PORT=/dev/ttyUSB0 LOCKER=townhall-1"
	@echo "make test    all tests: firmware logic on CPython and MicroPython, scenarios, host tools"
	@echo "make check   ruff, mypy (host tools; hardware layer against ESP32 stubs), mpy-cross sizes"
	@echo "make bench   latency, heap, flash-wear and boot-time figures"

$(STAMP): requirements-dev.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

system-packages:
	@scripts/system-packages $(SYSTEM_PACKAGES)

wasm: $(WASM_STAMP)

$(WASM_STAMP): bench/wasm/package.json bench/wasm/package-lock.json
	@scripts/system-packages node=nodejs npm=npm
	mkdir -p $(WASM)
	cp bench/wasm/package.json bench/wasm/package-lock.json $(WASM)/
	cd $(WASM) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# mosquitto when it can be had, else the simulator falls back to its embedded broker.
sim: $(STAMP)
	@scripts/system-packages --optional mosquitto=mosquitto
	$(BIN)/lockerctl sim web --board boards/$(BOARD).json $(SIM_FLAGS)

sim-terminal: $(STAMP)
	$(BIN)/lockerctl sim run --board boards/$(BOARD).json

sim-net: $(STAMP) system-packages
	$(BIN)/lockerctl sim net --board boards/$(BOARD).json

# A technician's board: make flash BOARD=esp32-4door PORT=/dev/ttyUSB0 LOCKER=townhall-1 [IMAGE=...]
# (docs/provisioning.md; FLASH_FLAGS=--dry-run prints the esptool and mpremote steps).
flash: $(STAMP)
	$(BIN)/lockerctl provision --board boards/$(BOARD).json $(if $(PORT),--port $(PORT)) $(if $(LOCKER),--locker $(LOCKER)) $(if $(IMAGE),--image $(IMAGE)) $(FLASH_FLAGS)

test: $(STAMP) system-packages $(WASM_STAMP)
	$(BIN)/pytest -n 2 --dist loadgroup

test-fast: $(STAMP)
	$(BIN)/pytest -m "not scenario and not slow"

check: lint typecheck mpy

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check host_tools/lockertools tests bench

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --config-file firmware/hal/mypy.ini

mpy: $(STAMP)
	@$(BIN)/python bench/mpy_sizes.py

bench: $(STAMP) system-packages $(WASM_STAMP)
	$(BIN)/python bench/run.py $(BENCH_FLAGS)

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
