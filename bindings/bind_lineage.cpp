// bindings/bind_lineage.cpp
#include "bindings.hpp"
#include "records.hpp"

#include "keel/lineage/graph.hpp"
#include "keel/storage/workspace.hpp"

#include <pybind11/stl.h>

namespace py = pybind11;
using namespace keel::lineage;

namespace keel::bindings {

namespace {

// Nodes and edges cross as dicts (keel.lineage reads them into DataFrames and plots); a node's
// version is None when it has none.
const auto kNodeFields = fields(
    field("ref", &Node::ref), field("kind", &Node::kind), field("name", &Node::name),
    field("version", [](const Node& n) { return n.version.empty() ? py::object(py::none()) : py::object(py::str(n.version)); }),
    field("owner", &Node::owner), field("description", &Node::description), field("tags", &Node::tags),
    field("created_at", &Node::created_at));
const auto kHopFields = fields(field("from", &Hop::from), field("kind", &Hop::kind), field("to", &Hop::to),
                               field("depth", &Hop::depth), field("created_at", &Hop::created_at));

py::dict subgraph_dict(const Subgraph& g) {
    py::dict out;
    out["root"] = g.root;
    out["nodes"] = dict_list(g.nodes, kNodeFields);
    out["edges"] = dict_list(g.edges, kHopFields);
    return out;
}

} // namespace

void bind_lineage(py::module_& m) {
    // Graph holds a reference to its workspace: keep_alive keeps the workspace for as long.
    py::class_<Graph>(m, "LineageGraph")
        .def(py::init<storage::Workspace&>(), py::arg("workspace"), py::keep_alive<1, 2>())
        .def(
            "upsert_node",
            [](Graph& g, const std::string& ref, std::optional<std::string> owner,
               std::optional<std::string> description, std::map<std::string, std::string> tags) {
                py::gil_scoped_release release;
                return g.upsert_node(ref, NodeInfo{std::move(owner), std::move(description), std::move(tags)});
            },
            py::arg("ref"), py::arg("owner") = py::none(), py::arg("description") = py::none(),
            py::arg("tags") = std::map<std::string, std::string>{})
        .def("add_edge", [](Graph& g, const std::string& from, const std::string& kind,
                            const std::string& to) { g.add_edge(from, kind, to); },
             py::call_guard<py::gil_scoped_release>())
        .def("remove_edge", [](Graph& g, const std::string& from, const std::string& kind,
                               const std::string& to) { g.remove_edge(from, kind, to); },
             py::call_guard<py::gil_scoped_release>())
        .def("node", [](Graph& g, const std::string& ref) { return record_dict(g.node(ref), kNodeFields); })
        .def("nodes", [](Graph& g, const std::string& kind) { return dict_list(g.nodes(kind), kNodeFields); },
             py::arg("kind") = "")
        .def("upstream", [](Graph& g, const std::string& ref, int depth, std::optional<int64_t> as_of) {
            Subgraph sg;
            {
                py::gil_scoped_release release;
                sg = g.upstream(ref, depth, as_of);
            }
            return subgraph_dict(sg);
        }, py::arg("ref"), py::arg("depth") = -1, py::arg("as_of") = py::none())
        .def("downstream", [](Graph& g, const std::string& ref, int depth, std::optional<int64_t> as_of) {
            Subgraph sg;
            {
                py::gil_scoped_release release;
                sg = g.downstream(ref, depth, as_of);
            }
            return subgraph_dict(sg);
        }, py::arg("ref"), py::arg("depth") = -1, py::arg("as_of") = py::none());
}

} // namespace keel::bindings
