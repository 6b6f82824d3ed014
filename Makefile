# midge: the README's two set-up commands are `make run` and `make test`.
CARGO ?= cargo

.PHONY: run build test test-deps unit bench autobahn fuzz fuzz-build fmt clean

run:
	$(CARGO) build --release
	./target/release/midge $(ARGS)

build:
	$(CARGO) build --release

# Installs what the interop tests need (Debian clients, paho-mqtt, MQTT.js, Chromium), then runs
# every test: unit, raw-socket integration and real-client interop.
test: test-deps
	$(CARGO) test
	$(MAKE) fuzz-build

# The fuzz targets are outside the workspace build; compile them so an API change that breaks
# them fails `make test` (installs cargo-fuzz when missing; needs the nightly toolchain).
fuzz-build:
	bash fuzz/run.sh --build-only

test-deps:
	bash tests/interop/install-deps.sh

unit:
	$(CARGO) test --lib

bench:
	bash benches/run.sh

# Autobahn|Testsuite conformance of the WebSocket layer (installs wstest for Python 2.7 via
# pyenv when missing); writes tests/autobahn/summary.md. Takes about 15 s.
autobahn:
	bash tests/autobahn/run.sh

# Each cargo-fuzz target for FUZZ_SECONDS (default 60) seconds; needs the nightly toolchain and
# installs cargo-fuzz if missing. Fails on any crash. See fuzz/run.sh.
fuzz:
	bash fuzz/run.sh

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
