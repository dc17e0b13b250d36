# A thin front for Meson + Ninja and the test runner; the real build lives in meson.build.
#   make build   programs in build/bin (optimized, fortified)
#   make test    sanitized build (ASan + UBSan, warnings as errors) in build-test, every suite
#   make run     build and start hutch with embedded defaults
#   make bench   run every benchmark and print one table
#   make format  apply .clang-format; make format-check only checks
#   make deps    install the Debian and npm packages the build and tests need (root)

BUILD ?= build
TEST_BUILD ?= build-test
NINJA ?= ninja
MESON_OPTS ?=
TEST_MESON_OPTS ?= -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false

.PHONY: all build test run bench format format-check deps clean

all: build

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

$(TEST_BUILD)/build.ninja:
	meson setup $(TEST_BUILD) $(TEST_MESON_OPTS)

build: $(BUILD)/build.ninja
	$(NINJA) -C $(BUILD)

test: $(TEST_BUILD)/build.ninja
	$(NINJA) -C $(TEST_BUILD)
	tests/run --build-dir $(TEST_BUILD)

run: build
	scripts/run-hutch $(BUILD)

bench: build
	bench/run --build-dir $(BUILD)

format:
	scripts/format

format-check:
	scripts/format --check

deps:
	scripts/install-deps

clean:
	rm -rf $(BUILD) $(TEST_BUILD)
