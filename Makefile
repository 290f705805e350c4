# tern quick start: `make run` and `make test`; `make` alone builds.
BUILD ?= build
GENERATOR ?= Ninja
CMAKE_FLAGS ?=

.PHONY: all deps configure build run run-regions run-single run-cluster demo test unit integration deps-bench bench bench-raft bench-placement bench-geo fuzz format clean

all: build

deps:
	@bash scripts/deps.sh

$(BUILD)/build.ninja: CMakeLists.txt | deps
	cmake -S . -B $(BUILD) -G $(GENERATOR) $(CMAKE_FLAGS)

configure: $(BUILD)/build.ninja

build: deps configure
	cmake --build $(BUILD)

# Three regions on loopback until Ctrl-C: us-east, eu-west, ap-southeast (S3 on 127.0.0.1:9101,
# 9201, 9301), one node each (NODES=3 for three per region), replicating to each other; data and
# logs under ./data; see scripts/run-regions.sh.
run: build
	bash scripts/run-regions.sh $(BUILD) ./data

run-regions: run

# One node with the embedded default: data under ./data-single, S3 on 127.0.0.1:9000.
run-single: build
	./$(BUILD)/ternd --data-dir ./data-single --s3-listen 127.0.0.1:9000

# A 3-node region on loopback (NODES=5 for more) with a throwaway CA; see scripts/run-cluster.sh.
run-cluster: build
	bash scripts/run-cluster.sh $(BUILD) ./data-cluster

# A geo-skewed workload against the cluster `make run` started (in another terminal): builds and
# starts nothing. DEMO_FLAGS passes options (e.g. DEMO_FLAGS="--ops 500 --seconds 60"; --help).
demo:
	/usr/bin/python3 scripts/demo.py $(DEMO_FLAGS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j2

unit: build
	cd $(BUILD) && ctest --output-on-failure -j2 -L unit

integration: build
	cd $(BUILD) && ctest --output-on-failure -L integration

# Benchmarks (bench/RESULTS.md): the single-node S3 one, then the Raft one against etcd.
deps-bench:
	@bash scripts/deps.sh bench

bench: deps-bench build
	bash bench/s3_single_node/run.sh
	bash bench/raft_vs_etcd/run.sh
	BUILD_DIR=$(BUILD) bash bench/placement/run.sh
	BIN_DIR=$(BUILD) bash bench/geo/run.sh

# 3-node tern region against 3-member etcd 3.4 (wrk, fsync on), then leader failover.
bench-raft: deps-bench build
	bash bench/raft_vs_etcd/run.sh

# The placement engine against the oracle and the baselines on six-region synthetic traces,
# and its speed and memory (bench/placement/README.md).
bench-placement: build
	BUILD_DIR=$(BUILD) bash bench/placement/run.sh

# Three live regions through the WAN proxy replaying a synthetic geo trace, against ternctl sim's
# prediction for it (bench/geo/README.md).
bench-geo: build
	BIN_DIR=$(BUILD) bash bench/geo/run.sh

# libFuzzer drivers (tests/fuzz), FUZZ_SECONDS each; crashes are saved under build-fuzz/.
FUZZ_SECONDS ?= 60
fuzz:
	@bash scripts/deps.sh fuzz
	CC=clang cmake -S . -B build-fuzz -G $(GENERATOR) -DTERN_FUZZ=ON -DTERN_SANITIZERS=OFF
	cmake --build build-fuzz --target fuzzers
	@set -e; for f in build-fuzz/fuzz_*; do \
	  [ -x "$$f" ] || continue; n=$$(basename $$f); mkdir -p build-fuzz/corpus/$$n; \
	  echo "== $$n ($(FUZZ_SECONDS) s)"; \
	  (cd build-fuzz && ./$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 corpus/$$n); \
	done

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)
