// core/features/removals.cpp: retiring a feature view and removing an entity. What `keel apply
// --prune` needs to take definitions out of a workspace without breaking recorded training sets:
// a retired view keeps its offline data and every version's record, an entity goes only once no
// live view uses it.
#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/features/store.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/generation.hpp"
#include "keel/storage/workspace.hpp"
#include "redis_client.hpp"
#include "redis_online.hpp"
#include "store_impl.hpp"

#include <algorithm>
#include <filesystem>
#include <set>
#include <sstream>

namespace fs = std::filesystem;

namespace keel::features {

void FeatureStore::retire_view(const std::string& name) {
    auto& db = ws_->db();
    std::vector<std::pair<int64_t, std::string>> snapshots;  // (id, file) of its online snapshots
    std::set<std::pair<std::string, int64_t>> in_redis;      // (Redis URL, view version) materialized there
    {
        storage::Transaction tx(db);
        if (auto r = detail::retirement(*this, name))
            throw_error(ErrorKind::NotFound, "feature view '{}' is already retired (by {}); live views: {}", name,
                        r->text(), detail::live_view_names(*this));
        view(name);  // NotFound naming the live views
        db.prepare("UPDATE features_views SET retired_at = ?, retired_by = ? WHERE name = ?")
            .bind_all(now_ms(), ws_->user(), name)
            .run();
        {
            auto st = db.prepare("SELECT id, file, online, version FROM features_online WHERE view = ?");
            st.bind_all(name);
            while (st.step()) {
                snapshots.emplace_back(st.int64(0), st.text(1));
                if (!st.text(2).empty()) in_redis.emplace(st.text(2), st.int64(3));
            }
        }
        db.prepare("DELETE FROM features_online WHERE view = ?").bind_all(name).run();
        // Its node stays (training sets and endpoints it fed keep their history); its state says it is gone.
        detail::lineage_node(*this, "feature_view:" + name, "", "", {{"state", "retired"}});
        storage::bump_generation(db);  // endpoints and readers in other processes drop its online values
        // The files go once the retirement lands: an outer transaction (keel.defs' apply) may still
        // roll it back. A reader in another process may still map one; its mapping stays valid.
        db.after_commit([ws = ws_, snapshots, in_redis, ns = impl_->online_namespace, name] {
            for (const auto& [id, file] : snapshots) detail::remove_segment_file(*ws, file);
            // Its keys in Redis go too (those without a TTL would stay forever). Best effort: with
            // Redis down they stay, and no reader asks for a retired view.
            for (const auto& [url, version] : in_redis) {
                ViewSpec spec;
                spec.name = name;
                spec.version = version;
                try {
                    auto conn = redis::Pool::of(redis::Location::parse(url))->lease_live();
                    redis_online::drop(*conn, redis_online::prefix(ns, spec));
                } catch (const Error&) {
                }
            }
        });
        tx.commit();
    }
    {
        std::lock_guard lock(impl_->mu);
        for (const auto& [id, file] : snapshots) {
            impl_->segments.erase(-id);
            impl_->encoded_keys.erase(-id);
        }
    }
    detail::refresh_readers(*this);  // readers of this store stop serving its values now
}

void FeatureStore::remove_entity(const std::string& name) {
    auto& db = ws_->db();
    storage::Transaction tx(db);
    entity(name);  // NotFound naming the known entities
    struct Version {
        std::string view;
        int64_t version;
        std::vector<std::string> entities;
    };
    std::vector<Version> legacy;     // versions using it whose join keys are not recorded yet
    std::set<std::string> live_users;  // live views whose current version uses it
    {
        auto st = db.prepare(
            "SELECT name, version, entities, retired_at IS NOT NULL, join_keys = '', "
            "version = (SELECT MAX(version) FROM features_views w WHERE w.name = v.name) "
            "FROM features_views v ORDER BY name, version");
        while (st.step()) {
            auto entities = detail::split_lines(st.text(2));
            if (std::find(entities.begin(), entities.end(), name) == entities.end()) continue;
            if (st.int64(3) == 0 && st.int64(5) != 0) live_users.insert(st.text(0));
            if (st.int64(4) != 0) legacy.push_back({st.text(0), st.int64(1), std::move(entities)});
        }
    }
    if (!live_users.empty())
        throw_error(ErrorKind::InvalidArgument,
                    "entity '{}' is used by live feature view(s) {}: retire them first "
                    "(ws.features.retire_view(name)), then remove the entity",
                    name, fmt::join(live_users, ", "));
    // Versions written before views recorded their join keys read them from their entities: record
    // them now, so those versions (and the training sets built on them) still read once it is gone.
    for (const auto& v : legacy) {
        std::vector<ColumnSpec> keys;
        for (const auto& en : v.entities) {
            auto e = entity(en);
            keys.insert(keys.end(), e.join_keys.begin(), e.join_keys.end());
        }
        db.prepare("UPDATE features_views SET join_keys = ? WHERE name = ? AND version = ?")
            .bind_all(detail::encode_keys(keys), v.view, v.version)
            .run();
    }
    db.prepare("DELETE FROM features_entity_keys WHERE entity = ?").bind_all(name).run();
    db.prepare("DELETE FROM features_entities WHERE name = ?").bind_all(name).run();
    tx.commit();
}

} // namespace keel::features
