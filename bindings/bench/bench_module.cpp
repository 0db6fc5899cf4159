// bindings/bench/bench_module.cpp: keel._bench, the timing loops the benchmarks in bench/ run inside
// C++ (no Python per call). A separate extension so that the production module keel._core carries
// no benchmark hooks; `import keel` never imports it. It takes the objects keel._core made (pybind11
// shares class registrations between modules built with the same compiler and pybind11).
//
// This module links its own copy of the core, so the core's process-wide state (the per-thread plugin
// hosts, the plugin search path) is separate from keel._core's: route_decisions() copies keel._core's
// search path first, and the router's plugin is loaded again into this module's host.
#include "keel/common/error.hpp"
#include "keel/features/online.hpp"
#include "keel/inference/predictor.hpp"
#include "keel/plugins/host.hpp"
#include "keel/plugins/router.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <span>
#include <vector>

namespace py = pybind11;

namespace {

using Clock = std::chrono::steady_clock;

double ns_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::nano>(b - a).count();
}

// Mean nanoseconds of one Predictor::predict_row call.
double time_single_row(const keel::inference::Predictor& p,
                       py::array_t<double, py::array::c_style | py::array::forcecast> row, int64_t iterations) {
    if (static_cast<size_t>(row.size()) != p.num_features())
        keel::throw_error(keel::ErrorKind::InvalidArgument, "row has {} values, the model reads {}", row.size(),
                          p.num_features());
    if (iterations < 1)
        keel::throw_error(keel::ErrorKind::InvalidArgument, "iterations is {}: time at least one call", iterations);
    std::vector<double> out(p.num_outputs());
    const double* x = row.data();
    py::gil_scoped_release release;
    p.predict_row(x, out.data());  // the thread's scratch grows on its first call
    auto start = Clock::now();
    for (int64_t i = 0; i < iterations; ++i) p.predict_row(x, out.data());
    return ns_between(start, Clock::now()) / double(iterations);
}

// Mean nanoseconds of one single-id OnlineReader::lookup, cycling over `ids`.
double online_lookup(const keel::features::OnlineReader& r, py::array_t<int64_t, py::array::c_style> ids,
                     int64_t repeat) {
    size_t n = size_t(ids.size());
    if (n == 0 || repeat < 1)
        keel::throw_error(keel::ErrorKind::InvalidArgument, "online_lookup needs ids ({} given) and repeat >= 1 ({})",
                          n, repeat);
    std::vector<double> out(r.width());
    const int64_t* p = ids.data();
    py::gil_scoped_release release;
    auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
    int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count();
    auto start = Clock::now();
    double sink = 0;
    for (int64_t i = 0; i < repeat; ++i) {
        r.lookup(p + size_t(i) % n, 1, out.data(), now);
        sink += out.empty() ? 0.0 : out[0];
    }
    auto end = Clock::now();
    (void)sink;
    return ns_between(start, end) / double(repeat);
}

// n routing decisions with integer keys in `key_field` cycling over `distinct_keys`, in batches of
// 64: the per-decision cost is each batch's time / 64; median and p99 are over batches.
py::dict route_decisions(keel::plugins::Router& r, int64_t n, int64_t distinct_keys, const std::string& key_field) {
    using keel::plugins::Field;
    if (n < 64 || distinct_keys < 1)
        keel::throw_error(keel::ErrorKind::InvalidArgument,
                          "route_decisions needs n >= 64 decisions ({}) and distinct_keys >= 1 ({})", n, distinct_keys);
    // This module's plugin host resolves plugin refs with its own search path: use keel._core's.
    auto roots = py::module_::import("keel._core").attr("plugins_search_path")();
    keel::plugins::set_search_path(roots.cast<std::vector<std::filesystem::path>>());
    constexpr int kBatch = 64;
    std::vector<double> per_batch;
    int64_t total_ns = 0, cpu_ns = 0;
    {
        py::gil_scoped_release release;
        per_batch.reserve(size_t(n / kBatch + 1));
        Field f{key_field, int64_t(0)};
        int64_t key = 0;
        for (int i = 0; i < 1000; ++i) r.route(std::span<const Field>(&f, 1));  // warm up, load the plugin
        auto start = Clock::now();
        timespec cpu0{}, cpu1{};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
        for (int64_t done = 0; done < n; done += kBatch) {
            auto t0 = Clock::now();
            for (int j = 0; j < kBatch; ++j) {
                f.value = key;
                if (++key == distinct_keys) key = 0;
                r.route(std::span<const Field>(&f, 1));
            }
            per_batch.push_back(ns_between(t0, Clock::now()) / kBatch);
        }
        total_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
        cpu_ns = (cpu1.tv_sec - cpu0.tv_sec) * 1'000'000'000LL + (cpu1.tv_nsec - cpu0.tv_nsec);
        std::sort(per_batch.begin(), per_batch.end());
    }
    double decisions = double(per_batch.size() * kBatch);
    py::dict d;
    d["decisions"] = int64_t(per_batch.size()) * kBatch;
    d["median_ns"] = per_batch[per_batch.size() / 2];
    d["p99_ns"] = per_batch[std::min(per_batch.size() - 1, per_batch.size() * 99 / 100)];
    d["per_second"] = decisions / (double(total_ns) / 1e9);  // wall clock
    // per core: decisions per second of this thread's CPU time (robust on a shared machine)
    d["per_cpu_second"] = decisions / (double(cpu_ns) / 1e9);
    return d;
}

} // namespace

PYBIND11_MODULE(_bench, m) {
    m.doc() = "Timing loops run inside C++ for bench/*.py. Not part of Keel's API; `import keel` never loads it.";
    py::module_::import("keel._core");  // registers the classes (and error types) taken below
    m.def("time_single_row", &time_single_row, py::arg("predictor"), py::arg("row"), py::arg("iterations") = 10000,
          "Mean nanoseconds of one predict_row call of a keel._core.NativePredictor.");
    m.def("online_lookup", &online_lookup, py::arg("reader"), py::arg("ids"), py::arg("repeat"),
          "Mean nanoseconds of one single-id lookup of a keel._core.OnlineReader, cycling over ids.");
    m.def("route_decisions", &route_decisions, py::arg("router"), py::arg("n") = 1'000'000,
          py::arg("distinct_keys") = 100'000, py::arg("key_field") = "user_id",
          "Times n decisions of a keel._core.Router: median/p99 ns, decisions/s (wall) and per CPU-second.");
}
