# analytics-service: the two commands of a fresh machine are `make run` and `make test`.
SHELL := /bin/bash
BUILD_DIR ?= build
TEST_BUILD_DIR ?= build-test
JOBS ?= $(shell nproc)

.PHONY: all deps build run test test-build bench clean

all: build

deps:
	@scripts/install-deps

# Release build; the binary lands at build/analytics-service.
build: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release -DANALYTICS_BUILD_TESTS=OFF >/dev/null
	@cmake --build $(BUILD_DIR) --target analytics-service -j $(JOBS)

# Starts the service with the embedded defaults (port 8081, data in ./data).
run: build
	ANALYTICS_DEMO_EVENTS=$${ANALYTICS_DEMO_EVENTS:-1000000} ./$(BUILD_DIR)/analytics-service serve

# Debug build with ASan/UBSan, real servers started and stopped by scripts/run-tests, every suite through ctest.
test-build: deps
	@cmake -S . -B $(TEST_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DANALYTICS_SANITIZE=ON >/dev/null
	@cmake --build $(TEST_BUILD_DIR) -j $(JOBS)

test: test-build
	@scripts/run-tests $(TEST_BUILD_DIR)

# Our API against DuckDB and ClickHouse on the same ~10M generated events (bench/README.md); builds what it
# needs (Release, in build-bench), installs the peers, writes bench/results/<date>.json.
# Options: make bench BENCH_ARGS="--events 2000000 --runs 3".
bench:
	@bench/compare/run $(BENCH_ARGS)

clean:
	rm -rf $(BUILD_DIR) $(TEST_BUILD_DIR)
