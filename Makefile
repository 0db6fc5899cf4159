# Keel: `make demo` and `make test` are all a newcomer needs; both install what is missing first.
PYTHON ?= python3
BUILD_DIR ?= build
JOBS ?= 2

# The pure-Python package and the freshly built extension, without a pip install.
export PYTHONPATH := $(CURDIR)/python$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: all deps build test test-cpp test-python test-notebooks test-fuzz notebooks demo bench clean \
        lint typecheck stubs check-stubs

all: build

deps:
	@PYTHON=$(PYTHON) bash scripts/install_deps.sh

# Configure once; afterwards the build is incremental (a touched .cpp rebuilds that file only).
# ccache, when the machine has it, makes a second checkout or a clean rebuild cost seconds.
# Looked up when the recipe runs (=, not :=), after deps may have installed it.
CCACHE = $(shell command -v ccache 2>/dev/null)
$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  $(if $(CCACHE),-DCMAKE_CXX_COMPILER_LAUNCHER=$(CCACHE)) \
	  -DPython_EXECUTABLE="$$($(PYTHON) -c 'import sys; print(sys.executable)')" \
	  -Dpybind11_DIR="$$($(PYTHON) -m pybind11 --cmakedir)"

build: deps $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)
	@$(PYTHON) scripts/install_cli.py  # `keel` on PATH for this Python, running this checkout

test: build
	$(MAKE) --no-print-directory lint typecheck check-stubs test-cpp test-python test-notebooks test-fuzz

# ruff (rules in pyproject.toml: bugs and old syntax, no formatter, no import sorting).
LINT_PATHS := python tests/python tests/servers scripts bench
lint:
	$(PYTHON) -m ruff check $(LINT_PATHS)

# mypy over the package python/keel, typed against the checked-in stubs of keel._core.
typecheck:
	$(PYTHON) -m mypy

# Regenerates python/keel/_core/*.pyi from the built extension (pybind11-stubgen); commit the result.
stubs: build
	$(PYTHON) scripts/stubs.py

# Fails when the checked-in stubs no longer match the built extension.
check-stubs:
	$(PYTHON) scripts/stubs.py --check

test-cpp:
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

test-python:
	$(PYTHON) -m pytest tests/python -q

# Executes every notebook and fails on an error, or when a committed notebook is not an executed,
# current copy (outputs compared by kind, not value, so timings never fail it).
test-notebooks:
	$(PYTHON) scripts/run_notebooks.py notebooks

# Re-executes the notebooks and writes their outputs back, for committing (tables and plots show on a code host).
notebooks: build
	$(PYTHON) scripts/run_notebooks.py --write notebooks

# libFuzzer (clang, ASan + UBSan) on the segment reader, the model loader, the filter parser and the
# server's bearer-token and predict-body parsers, in their own build dir: FUZZ_SECONDS per target,
# after replaying tests/fuzz/corpus/. Fails on a finding.
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 20
FUZZ_CXX ?= clang++-14
FUZZ_CC ?= clang-14
$(FUZZ_DIR)/CMakeCache.txt:
	CC=$(FUZZ_CC) CXX=$(FUZZ_CXX) cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  $(if $(CCACHE),-DCMAKE_CXX_COMPILER_LAUNCHER=$(CCACHE)) \
	  -DKEEL_BUILD_FUZZERS=ON -DKEEL_BUILD_PYTHON=OFF -DKEEL_BUILD_TESTS=OFF

test-fuzz: deps $(FUZZ_DIR)/CMakeCache.txt
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target keel_fuzzers
	bash scripts/run_fuzzers.sh $(FUZZ_DIR) $(FUZZ_SECONDS)

demo: build
	$(PYTHON) scripts/demo.py

bench: build
	bash bench/run.sh

clean:
	rm -rf $(BUILD_DIR) $(FUZZ_DIR) python/keel/_core*.so
