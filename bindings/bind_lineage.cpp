// bindings/bind_lineage.cpp
#include "bindings.hpp"

#include "keel/lineage/graph.hpp"
#include "keel/storage/workspace.hpp"

#include <pybind11/stl.h>

namespace py = pybind11;
using namespace keel::lineage;

namespace keel::bindings {

namespace {

// The graph object and the workspace it writes to, kept alive together.
struct PyGraph {
    std::shared_ptr<storage::Workspace> ws;
    Graph graph;
    explicit PyGraph(std::shared_ptr<storage::Workspace> w) : ws(std::move(w)), graph(*ws) {}
};

py::dict node_dict(const Node& n) {
    py::dict d;
    d["ref"] = n.ref;
    d["kind"] = n.kind;
    d["name"] = n.name;
    d["version"] = n.version.empty() ? py::object(py::none()) : py::object(py::str(n.version));
    d["owner"] = n.owner;
    d["description"] = n.description;
    d["tags"] = n.tags;
    d["created_at"] = n.created_at;
    return d;
}

py::dict subgraph_dict(const Subgraph& g) {
    py::list nodes, edges;
    for (const auto& n : g.nodes) nodes.append(node_dict(n));
    for (const auto& e : g.edges) {
        py::dict d;
        d["from"] = e.from;
        d["kind"] = e.kind;
        d["to"] = e.to;
        d["depth"] = e.depth;
        d["created_at"] = e.created_at;
        edges.append(d);
    }
    py::dict out;
    out["root"] = g.root;
    out["nodes"] = nodes;
    out["edges"] = edges;
    return out;
}

} // namespace

void bind_lineage(py::module_& m) {
    py::class_<PyGraph>(m, "LineageGraph")
        .def(py::init<std::shared_ptr<storage::Workspace>>(), py::arg("workspace"))
        .def(
            "upsert_node",
            [](PyGraph& g, const std::string& ref, std::optional<std::string> owner,
               std::optional<std::string> description, std::map<std::string, std::string> tags) {
                py::gil_scoped_release release;
                return g.graph.upsert_node(ref, NodeInfo{std::move(owner), std::move(description), std::move(tags)});
            },
            py::arg("ref"), py::arg("owner") = py::none(), py::arg("description") = py::none(),
            py::arg("tags") = std::map<std::string, std::string>{})
        .def("add_edge", [](PyGraph& g, const std::string& from, const std::string& kind,
                            const std::string& to) { g.graph.add_edge(from, kind, to); },
             py::call_guard<py::gil_scoped_release>())
        .def("remove_edge", [](PyGraph& g, const std::string& from, const std::string& kind,
                               const std::string& to) { g.graph.remove_edge(from, kind, to); },
             py::call_guard<py::gil_scoped_release>())
        .def("node", [](PyGraph& g, const std::string& ref) { return node_dict(g.graph.node(ref)); })
        .def("nodes", [](PyGraph& g, const std::string& kind) {
            py::list out;
            for (const auto& n : g.graph.nodes(kind)) out.append(node_dict(n));
            return out;
        }, py::arg("kind") = "")
        .def("upstream", [](PyGraph& g, const std::string& ref, int depth, std::optional<int64_t> as_of) {
            Subgraph sg;
            {
                py::gil_scoped_release release;
                sg = g.graph.upstream(ref, depth, as_of);
            }
            return subgraph_dict(sg);
        }, py::arg("ref"), py::arg("depth") = -1, py::arg("as_of") = py::none())
        .def("downstream", [](PyGraph& g, const std::string& ref, int depth, std::optional<int64_t> as_of) {
            Subgraph sg;
            {
                py::gil_scoped_release release;
                sg = g.graph.downstream(ref, depth, as_of);
            }
            return subgraph_dict(sg);
        }, py::arg("ref"), py::arg("depth") = -1, py::arg("as_of") = py::none());
}

} // namespace keel::bindings
