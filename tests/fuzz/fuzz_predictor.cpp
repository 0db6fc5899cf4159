// libFuzzer target: the native model loader (core/inference/format.cpp + predictor.cpp). The input
// is a KEELPRED body; the target wraps it in a header with its true sha256, so mutations get past
// the checksum to the record parser and the model validator. A model that loads is then run on a
// few rows (zeros, NaN, large values), one at a time and as a batch, and asked for recommendations
// when it is a factorization model. Only keel::Error may escape.
#include "keel/common/error.hpp"
#include "keel/inference/format.hpp"
#include "keel/inference/predictor.hpp"
#include "keel/storage/artifact_store.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace {

template <typename T>
void put(std::string& out, T v) {
    char buf[sizeof(T)];
    std::memcpy(buf, &v, sizeof(T));
    out.append(buf, sizeof(T));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view body(reinterpret_cast<const char*>(data), size);
    std::string bytes = "KEELPRED";
    put<uint32_t>(bytes, keel::inference::kFormatVersion);
    put<uint32_t>(bytes, 0);
    put<uint64_t>(bytes, body.size());
    bytes += keel::storage::sha256_hex(body);
    bytes += body;
    std::shared_ptr<const keel::inference::Predictor> p;
    try {
        p = keel::inference::load_predictor(bytes);
    } catch (const keel::Error&) {
        return 0;
    }
    // Bound the work a fuzzed model may ask for (a real model this wide loads fine, but not here).
    const size_t width = p->num_features(), outs = p->num_outputs(), raw = p->num_raw_outputs();
    if (width > 4096 || outs > 4096 || raw > 4096) return 0;
    const size_t rows = 4;
    std::vector<double> x(rows * width), y(rows * std::max(outs, raw));
    for (size_t i = 0; i < width; ++i) {
        x[0 * width + i] = 0.0;
        x[1 * width + i] = std::numeric_limits<double>::quiet_NaN();
        x[2 * width + i] = double(i % 7) - 3.0;
        x[3 * width + i] = i % 2 ? 1e300 : -1e300;
    }
    // Input-dependent refusals (a NaN where a factorization model wants indices) are keel::Errors;
    // anything else escaping, or a sanitizer report, is a bug.
    auto run = [](auto&& call) {
        try {
            call();
        } catch (const keel::Error&) {
        }
    };
    for (size_t r = 0; r < rows; ++r) {
        run([&] { p->predict_row(x.data() + r * width, y.data()); });
        run([&] { p->predict_row(x.data() + r * width, y.data(), /*raw=*/true); });
    }
    run([&] { p->predict(x.data(), rows, y.data(), 1); });
    std::vector<float> xf(x.begin(), x.end());
    run([&] { p->predict(xf.data(), rows, y.data(), 1); });
    if (p->task() == keel::inference::Task::Factorization) {
        const int64_t users[] = {0, 1, -1, 1 << 30};
        const int64_t items[] = {0, 2, 1 << 30, -5};
        double scores[4];
        run([&] { p->score_pairs(users, items, 4, scores); });
        run([&] { p->recommend(users, 4, 3, nullptr, nullptr, 1); });
    }
    return 0;
}
