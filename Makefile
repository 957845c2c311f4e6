# The two commands of the README:  make demo  and  make test.
# Everything else wraps CMake for convenience.
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps deps-test configure build demo test test-all asan bench fuzz install clean

all: build

deps:
	@scripts/install-deps build

deps-test:
	@scripts/install-deps test

configure:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: deps configure
	cmake --build $(BUILD) -j$(JOBS)

# The main job: a local federated cluster on the bundled HAPT data.
demo: build
	$(BUILD)/cli/starling cluster --config examples/hapt.ini

# The default test suite (everything but tests labelled slow).
test: deps-test configure
	cmake --build $(BUILD) -j$(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) -LE slow

test-all: deps-test configure
	cmake --build $(BUILD) -j$(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# The suite again under AddressSanitizer + UndefinedBehaviorSanitizer (clang).
asan: deps-test
	CC=clang cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSL_SANITIZE=address,undefined $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j$(JOBS) -LE slow

bench: build
	@for b in $(BUILD)/bench/bench_*; do echo "# $$b" >&2; $$b; done

fuzz: deps-test
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DSL_FUZZ=ON -DSL_SANITIZE=address,undefined
	cmake --build build-fuzz -j$(JOBS)

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz
