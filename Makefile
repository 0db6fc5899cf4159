# Keel: `make demo` and `make test` are all a newcomer needs; both install what is missing first.
PYTHON ?= python3
BUILD_DIR ?= build
JOBS ?= 2

# The pure-Python package and the freshly built extension, without a pip install.
export PYTHONPATH := $(CURDIR)/python$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: all deps build test test-cpp test-python test-notebooks notebooks demo bench clean

all: build

deps:
	@PYTHON=$(PYTHON) bash scripts/install_deps.sh

# Configure once; afterwards the build is incremental (a touched .cpp rebuilds that file only).
# ccache, when the machine has it, makes a second checkout or a clean rebuild cost seconds.
CCACHE := $(shell command -v ccache 2>/dev/null)
$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  $(if $(CCACHE),-DCMAKE_CXX_COMPILER_LAUNCHER=$(CCACHE)) \
	  -DPython_EXECUTABLE="$$($(PYTHON) -c 'import sys; print(sys.executable)')" \
	  -Dpybind11_DIR="$$($(PYTHON) -m pybind11 --cmakedir)"

build: deps $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)
	@$(PYTHON) scripts/install_cli.py  # `keel` on PATH for this Python, running this checkout

test: build
	$(MAKE) --no-print-directory test-cpp test-python test-notebooks

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

demo: build
	$(PYTHON) scripts/demo.py

bench: build
	bash bench/run.sh

clean:
	rm -rf $(BUILD_DIR) python/keel/_core*.so
