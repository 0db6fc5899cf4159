# tests/fuzz/instrument.cmake: included by the top-level CMakeLists.txt before core/ when
# KEEL_BUILD_FUZZERS is on, so the whole fuzz build (build-fuzz/, see `make test-fuzz`) is compiled
# with ASan, UBSan and libFuzzer's coverage. The fuzz targets then link the core's own module
# libraries (keel_features, keel_inference, ...), whose source lists core/CMakeLists.txt checks at
# every configure: a source a target needs cannot be missing from a list of the fuzz build's own.
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "KEEL_BUILD_FUZZERS needs clang (libFuzzer): configure with CXX=clang++-14")
endif()

set(KEEL_FUZZ_SANITIZERS -fsanitize=address,undefined -fno-sanitize-recover=undefined
    -fno-sanitize=vptr -fno-omit-frame-pointer)
add_compile_options(${KEEL_FUZZ_SANITIZERS} -fsanitize=fuzzer-no-link)
add_link_options(${KEEL_FUZZ_SANITIZERS})
