// core/include/keel/lineage/graph.hpp
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keel::storage {
class Workspace;
struct ModuleSchema;
}

namespace keel::lineage {

//! A parsed node ref `kind:name[/version]`: `model:churn/3`, `run:9f1c...`, `feature_view:player_activity`.
//! Only `model` refs carry a version after the last '/'; other kinds keep slashes in their names.
struct Ref {
    std::string kind;
    std::string name;
    std::string version; //!< empty when the ref names no version

    //! Throws InvalidArgument naming the ref and the expected shape.
    static Ref parse(std::string_view text);
    std::string str() const;
};

//! What is known of a node besides its ref. Unset fields are left as stored.
struct NodeInfo {
    std::optional<std::string> owner;
    std::optional<std::string> description;
    std::map<std::string, std::string> tags; //!< merged into the node's tags
};

//! An edge to write: `from -kind-> to` (refs as for add_edge).
struct EdgeRef {
    std::string from;
    std::string kind;
    std::string to;
};

struct Node {
    std::string ref;
    std::string kind;
    std::string name;
    std::string version;
    std::string owner;
    std::string description;
    std::map<std::string, std::string> tags;
    int64_t created_at = 0;
};

//! One edge reached by a traversal, always in data-flow direction (`from` feeds `to`).
struct Hop {
    std::string from;
    std::string kind;
    std::string to;
    int depth = 0; //!< 1 for edges touching the start node
    int64_t created_at = 0;
};

struct Subgraph {
    std::string root;
    std::vector<Node> nodes; //!< every node reached, the root first
    std::vector<Hop> edges;
};

//! The lineage graph: nodes and versioned edges in the workspace's metadata store. Every module
//! writes its edges here as a side effect of its work. Edges are never overwritten: removing one
//! stamps it, so the graph can be read as it stood at any past time.
class Graph {
public:
    explicit Graph(storage::Workspace& ws);
    //! Its tables' migrations, applied when it is constructed (`keel admin migrate` lists them).
    static const storage::ModuleSchema& schema();

    //! Creates the node if missing and merges the given info into it. Returns its canonical ref.
    std::string upsert_node(std::string_view ref, const NodeInfo& info = {});
    //! Adds `from -kind-> to` (data flows from `from` to `to`), creating missing nodes. A live edge
    //! with the same ends and kind is not duplicated.
    void add_edge(std::string_view from, std::string_view kind, std::string_view to);
    //! The lineage of one piece of work in a few statements instead of a few per node and edge:
    //! upsert_node for each of `nodes`, then add_edge for each of `edges` (missing end nodes
    //! created, a live edge not added twice). On PostgreSQL: one statement per node given an owner
    //! or description, one for all their tags, one for the other nodes, one for the edges; all
    //! queued. A registration writes its version this way.
    void record(const std::vector<std::pair<std::string, NodeInfo>>& nodes, const std::vector<EdgeRef>& edges);
    //! add_edge(from, kind, to) for every `to`, in a few multi-row statements (bulk imports).
    void add_edges(std::string_view from, std::string_view kind, const std::vector<std::string>& to);
    //! Ends a live edge; it stays visible to as_of queries before now. NotFound if there is none.
    void remove_edge(std::string_view from, std::string_view kind, std::string_view to);

    std::optional<Node> find_node(std::string_view ref);
    //! NotFound naming the ref when it does not exist.
    Node node(std::string_view ref);
    //! All nodes, optionally of one kind, oldest first.
    std::vector<Node> nodes(std::string_view kind = {});

    //! Everything `ref` was made from (depth < 0: no limit), as of `as_of_ms` (default: now).
    Subgraph upstream(std::string_view ref, int depth = -1, std::optional<int64_t> as_of_ms = {});
    //! Everything made from `ref`: impact analysis.
    Subgraph downstream(std::string_view ref, int depth = -1, std::optional<int64_t> as_of_ms = {});

private:
    Subgraph traverse(std::string_view ref, bool upstream, int depth, std::optional<int64_t> as_of_ms);
    int64_t node_id(const std::string& ref, bool create);
    //! Queues the node's row unless it exists (`ref` already normalized).
    void ensure_node(const std::string& ref);
    storage::Workspace& ws_;
};

} // namespace keel::lineage
