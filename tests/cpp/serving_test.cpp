// tests/cpp/serving_test.cpp: InputPlan — model inputs by name, refusals, policies, no allocation.
#include "keel/common/error.hpp"
#include "keel/common/names.hpp"
#include "keel/serving/input_plan.hpp"

#include "support/count_allocations.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <new>

using namespace keel;
using namespace keel::serving;
using Status = features::OnlineReader::Status;

namespace {

InputSpec spec(OnMissing policy = OnMissing::Error) {
    InputSpec s;
    s.endpoint = "churn";
    s.features = {"activity:spend_7d", "activity:spend_30d", "activity:carts_7d"};
    s.inputs = {"country_code"};
    s.on_missing = policy;
    return s;
}

ModelInputs model(std::vector<std::string> names) { return {"champion", "churn/3", std::move(names), {}}; }

std::string message_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
        return e.what();
    }
    ADD_FAILURE() << "no error";
    return "";
}

} // namespace

TEST(InputPlan, FeedsModelInputsByNameNotPosition) {
    InputPlan plan(spec(), {model({"spend_30d", "country_code", "spend_7d"})});
    double feats[3] = {7.0, 30.0, 3.0};
    Status st[3] = {Status::Ok, Status::Ok, Status::Ok};
    plugins::Field req[] = {{"player_id", int64_t(1)}, {"country_code", int64_t(44)}};
    double row[3];
    InputState state[3];
    plan.fill(0, feats, st, req, row, state);
    EXPECT_EQ(row[0], 30.0);
    EXPECT_EQ(row[1], 44.0);
    EXPECT_EQ(row[2], 7.0);
    EXPECT_EQ(plan.features_read(0), (std::vector<size_t>{1, 0}));
    long before = g_allocations.load();
    for (int i = 0; i < 1000; ++i) plan.fill(0, feats, st, req, row, state);
    EXPECT_EQ(g_allocations.load(), before);
}

TEST(InputPlan, RefusesModelsItCannotFeedNamingMissingAndExtra) {
    auto msg = message_of([] { InputPlan(spec(), {model({"spend_30d", "views_7d"})}); });
    EXPECT_NE(msg.find("endpoint 'churn', variant 'champion'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing [views_7d]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("extra [activity:spend_7d, activity:carts_7d, country_code]"), std::string::npos) << msg;
    msg = message_of([] { InputPlan(spec(), {model({"x0", "x1"})}); });
    EXPECT_NE(msg.find("signature="), std::string::npos) << msg;
    ModelInputs declared{"champion", "churn/3", {"Column_0", "Column_1"}, {"carts_7d", "spend_7d"}};
    InputPlan ok(spec(), {declared});
    EXPECT_EQ(ok.names(0), (std::vector<std::string>{"carts_7d", "spend_7d"}));
}

TEST(InputPlan, PoliciesForMissingAndStaleInputs) {
    double feats[3] = {NAN, 30.0, NAN};
    Status st[3] = {Status::MissingEntity, Status::Ok, Status::Stale};
    double row[3];
    InputState state[3];
    InputPlan strict(spec(), {model({"spend_7d", "spend_30d", "carts_7d"})});
    auto msg = message_of([&] { strict.fill(0, feats, st, {}, row, state); });
    EXPECT_NE(msg.find("missing [spend_7d], stale [carts_7d]"), std::string::npos) << msg;
    double fresh_feats[3] = {1.0, 30.0, NAN};
    Status only_stale[3] = {Status::Ok, Status::Ok, Status::Stale};
    msg = message_of([&] { strict.fill(0, fresh_feats, only_stale, {}, row, state); });
    EXPECT_NE(msg.find("no fresh value for stale [carts_7d]"), std::string::npos) << msg;

    InputPlan flag(spec(OnMissing::Flag), {model({"spend_7d", "spend_30d", "carts_7d"})});
    flag.fill(0, feats, st, {}, row, state);
    EXPECT_TRUE(std::isnan(row[0]));
    EXPECT_EQ(state[0], InputState::Missing);
    EXPECT_EQ(state[2], InputState::Stale);
    plugins::Field sent[] = {{"spend_7d", 1.5}};  // the caller's value wins
    flag.fill(0, feats, st, sent, row, state);
    EXPECT_EQ(row[0], 1.5);
    EXPECT_EQ(state[0], InputState::Ok);

    auto with_defaults = spec(OnMissing::Default);
    with_defaults.defaults = {{"spend_7d", 0.0}, {"carts_7d", -1.0}};
    InputPlan dflt(with_defaults, {model({"spend_7d", "spend_30d", "carts_7d"})});
    dflt.fill(0, feats, st, {}, row, state);
    EXPECT_EQ(row[0], 0.0);
    EXPECT_EQ(row[2], -1.0);
    EXPECT_EQ(state[2], InputState::Stale);  // still reported
    with_defaults.defaults = {{"nope", 0.0}};
    msg = message_of([&] { InputPlan(with_defaults, {model({"spend_7d"})}); });
    EXPECT_NE(msg.find("'nope'"), std::string::npos) << msg;
}

TEST(Names, EndpointAndModelNamesShareOneRule) {
    for (const std::string& bad : std::vector<std::string>{"a/b", "..", std::string("a\0b", 3), std::string(10000, 'x'), "", "a@b", "a:b"})
        EXPECT_FALSE(valid_name(bad)) << bad.size();
    EXPECT_TRUE(valid_name("churn-lgbm_2.1"));
    auto msg = message_of([] { check_name(std::string(10000, 'x'), "endpoint", "churn"); });
    EXPECT_NE(msg.find("10000 characters"), std::string::npos) << msg;
}
