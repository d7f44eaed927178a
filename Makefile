# The two commands of the README: `make run` and `make test`. Everything else builds on them.
BUILD      ?= build
BUILD_SAN  ?= build-san
JOBS       ?= $(shell nproc)
ARGS       ?=
MAKEFLAGS  += --no-print-directory

.PHONY: all deps build build-san run test bench demo clean fuzz

all: build

deps:
	@./scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-san: deps
	@cmake -S . -B $(BUILD_SAN) -DCMAKE_BUILD_TYPE=Debug -DMZ_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD_SAN) -j $(JOBS)

run: build
	./$(BUILD)/meshzero node $(ARGS)

test: build-san
	@cd $(BUILD_SAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	  ctest --output-on-failure -j $(JOBS)

# make bench [ONLY=section,...] [NODES=N] [IDLE_S=S]: all sections by
# default; ONLY=list prints them. NODES, IDLE_S: node processes of the scale
# section and its idle measurement in seconds.
ONLY   ?= all
NODES  ?= 30
IDLE_S ?= 20
bench: build
	@ONLY=$(ONLY) NODES=$(NODES) IDLE_S=$(IDLE_S) ./bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_SAN)

demo: build
	@./scripts/demo.sh $(BUILD)

# libFuzzer harnesses (fuzz/README.md): build build-fuzz/ with clang, run each
# harness FUZZ_SECONDS over its corpus plus new inputs.
FUZZ_SECONDS ?= 60
fuzz: deps
	@./fuzz/run.sh fuzz $(FUZZ_SECONDS)

# Chaos soak (tests/chaos/chaos.py): SOAK_NODES node processes, SOAK_SECONDS of
# kill -9 and restarts, cut links, registrations, updates, removals and
# executes, then every live directory checked against the ground truth.
SOAK_NODES   ?= 12
SOAK_SECONDS ?= 600
.PHONY: soak
soak: build
	@python3 tests/chaos/chaos.py --nodes $(SOAK_NODES) --seconds $(SOAK_SECONDS) --bin $(BUILD)/meshzero
