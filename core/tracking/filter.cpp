// core/tracking/filter.cpp
#include "keel/tracking/filter.hpp"

#include "keel/common/error.hpp"

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <optional>

namespace keel::tracking {

namespace {

enum class Tok { Ident, Quoted, Backquoted, Number, Op, LParen, RParen, Comma, Dot, End };

struct Token {
    Tok kind;
    std::string text; //!< unquoted content for strings, the source text otherwise
    size_t pos = 0;   //!< 0-based offset in the filter
    std::string raw;  //!< as written, for error messages
};

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string upper(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = char(std::toupper(static_cast<unsigned char>(c)));
    return out;
}

// The token a character stands for on its own, if it is one of those.
std::optional<Tok> punctuation(char c) {
    switch (c) {
    case '(': return Tok::LParen;
    case ')': return Tok::RParen;
    case ',': return Tok::Comma;
    case '.': return Tok::Dot;
    default: return std::nullopt;
    }
}

[[noreturn]] void bad(std::string_view filter, size_t pos, std::string_view token, std::string_view why) {
    // A filter can be megabytes long (a huge IN list): quote a bounded excerpt of it and the token.
    auto excerpt = [](std::string_view text) {
        return text.size() <= 200 ? std::string(text) : std::string(text.substr(0, 200)) + "...";
    };
    throw_error(ErrorKind::InvalidArgument, "invalid filter at position {} (token '{}'): {}. Filter: \"{}\"",
                pos + 1, excerpt(token), why, excerpt(filter));
}

std::vector<Token> tokenize(std::string_view s) {
    std::vector<Token> out;
    size_t i = 0;
    while (i < s.size()) {
        char c = s[i];
        if (std::isspace(static_cast<unsigned char>(c))) {
            ++i;
            continue;
        }
        size_t start = i;
        if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
            while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_' || s[i] == '-'))
                ++i;
            out.push_back({Tok::Ident, std::string(s.substr(start, i - start)), start,
                           std::string(s.substr(start, i - start))});
        } else if (c == '\'' || c == '"' || c == '`') {
            std::string text;
            ++i;
            bool closed = false;
            while (i < s.size()) {
                if (s[i] == c) {
                    if (i + 1 < s.size() && s[i + 1] == c) { // doubled quote escapes itself
                        text += c;
                        i += 2;
                        continue;
                    }
                    closed = true;
                    ++i;
                    break;
                }
                text += s[i++];
            }
            if (!closed) bad(s, start, s.substr(start), "unterminated quoted string: close it with the same quote");
            out.push_back({c == '`' ? Tok::Backquoted : Tok::Quoted, text, start, std::string(s.substr(start, i - start))});
        } else if (std::isdigit(static_cast<unsigned char>(c)) ||
                   ((c == '-' || c == '+' || c == '.') && i + 1 < s.size() &&
                    (std::isdigit(static_cast<unsigned char>(s[i + 1])) || s[i + 1] == '.'))) {
            ++i;
            while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '.' ||
                                    ((s[i] == '-' || s[i] == '+') && (s[i - 1] == 'e' || s[i - 1] == 'E'))))
                ++i;
            out.push_back({Tok::Number, std::string(s.substr(start, i - start)), start,
                           std::string(s.substr(start, i - start))});
        } else if (c == '=' || c == '!' || c == '<' || c == '>') {
            ++i;
            if (i < s.size() && (s[i] == '=' || (c == '<' && s[i] == '>'))) ++i;
            std::string op(s.substr(start, i - start));
            if (op == "!") bad(s, start, op, "'!' must be followed by '=' (use != for not equal)");
            if (op == "==") op = "=";
            if (op == "<>") op = "!=";
            out.push_back({Tok::Op, op, start, std::string(s.substr(start, i - start))});
        } else if (auto kind = punctuation(c)) {
            out.push_back({*kind, std::string(1, c), start, std::string(1, c)});
            ++i;
        } else {
            bad(s, start, s.substr(start, 1), "unexpected character");
        }
    }
    out.push_back({Tok::End, "", s.size(), "<end of filter>"});
    return out;
}

// Canonical attribute name, or empty when `name` is not an attribute.
std::string attribute_name(std::string_view name) {
    std::string n = lower(name);
    if (n == "status" || n == "user" || n == "start_time" || n == "end_time" || n == "run_id" ||
        n == "experiment" || n == "parent_id")
        return n;
    if (n == "name" || n == "run_name") return "name";
    if (n == "id") return "run_id";
    return {};
}

bool entity_prefix(std::string_view word, Entity& entity) {
    std::string w = lower(word);
    if (w == "metrics" || w == "metric") entity = Entity::Metric;
    else if (w == "params" || w == "param" || w == "parameters" || w == "parameter") entity = Entity::Param;
    else if (w == "tags" || w == "tag") entity = Entity::Tag;
    else if (w == "attributes" || w == "attribute" || w == "attr" || w == "run") entity = Entity::Attribute;
    else return false;
    return true;
}

class Parser {
public:
    explicit Parser(std::string_view s) : s_(s), toks_(tokenize(s)) {}

    std::vector<Term> filter() {
        std::vector<Term> terms;
        if (peek().kind == Tok::End) return terms;
        while (true) {
            if (terms.size() == kMaxFilterTerms)
                bad(s_, peek().pos, peek().raw,
                    fmt::format("a filter holds at most {} terms; narrow it, or filter the rest in pandas",
                                kMaxFilterTerms));
            terms.push_back(term());
            const Token& t = peek();
            if (t.kind == Tok::End) break;
            if (t.kind == Tok::Ident && lower(t.text) == "and") {
                ++i_;
                continue;
            }
            if (t.kind == Tok::Ident && lower(t.text) == "or")
                bad(s_, t.pos, t.raw, "OR is not supported: terms can only be joined with AND");
            bad(s_, t.pos, t.raw, "expected AND or the end of the filter after a complete term");
        }
        return terms;
    }

    // entity.key or a bare attribute; fills entity and key.
    void key(Entity& entity, std::string& name, std::string_view context) {
        const Token& t = next();
        if (t.kind == Tok::Ident || t.kind == Tok::Backquoted) {
            if (t.kind == Tok::Ident && peek().kind == Tok::Dot) {
                if (!entity_prefix(t.text, entity))
                    bad(s_, t.pos, t.raw,
                        "unknown key prefix: use metrics.<key>, params.<key>, tags.<key> or attributes.<name>");
                ++i_; // the dot
                const Token& k = next();
                if (k.kind != Tok::Ident && k.kind != Tok::Backquoted && k.kind != Tok::Quoted)
                    bad(s_, k.pos, k.raw, fmt::format("expected a key name after '{}.'", t.text));
                name = k.text;
                // Unquoted keys may contain dots and slashes ("metrics.val.loss" is key "val.loss").
                while (k.kind == Tok::Ident && peek().kind == Tok::Dot && toks_[i_ + 1].kind == Tok::Ident &&
                       toks_[i_ + 1].pos == peek().pos + 1 && peek().pos == toks_[i_ - 1].pos + toks_[i_ - 1].raw.size()) {
                    name += ".";
                    ++i_;
                    name += next().text;
                }
                if (entity == Entity::Attribute) {
                    std::string a = attribute_name(name);
                    if (a.empty())
                        bad(s_, k.pos, k.raw,
                            "unknown attribute: use status, name, run_id, parent_id, user, start_time, end_time or experiment");
                    name = a;
                }
                return;
            }
            std::string a = t.kind == Tok::Ident ? attribute_name(t.text) : std::string();
            if (a.empty())
                bad(s_, t.pos, t.raw,
                    fmt::format("expected {}: metrics.<key>, params.<key>, tags.<key>, or an attribute "
                                "(status, name, run_id, parent_id, user, start_time, end_time, experiment)",
                                context));
            entity = Entity::Attribute;
            name = a;
            return;
        }
        bad(s_, t.pos, t.raw,
            fmt::format("expected {}: metrics.<key>, params.<key>, tags.<key>, or an attribute", context));
    }

    Term term() {
        Term term;
        key(term.entity, term.key, "a key");
        bool numeric = term.entity == Entity::Metric ||
                       (term.entity == Entity::Attribute && numeric_attribute(term.key));
        const Token& op = next();
        if (op.kind == Tok::Op) {
            term.op = op.text;
        } else if (op.kind == Tok::Ident) {
            std::string w = upper(op.text);
            if (w == "LIKE" || w == "ILIKE" || w == "IN") {
                term.op = w;
            } else if (w == "NOT") {
                const Token& in = next();
                if (in.kind != Tok::Ident || upper(in.text) != "IN")
                    bad(s_, in.pos, in.raw, "expected IN after NOT");
                term.op = "NOT IN";
            } else {
                bad(s_, op.pos, op.raw, "expected a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN)");
            }
        } else {
            bad(s_, op.pos, op.raw, "expected a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN)");
        }
        if (numeric && (term.op == "LIKE" || term.op == "ILIKE" || term.op == "IN" || term.op == "NOT IN"))
            bad(s_, op.pos, op.raw, fmt::format("{} compares strings; '{}' is numeric: use =, !=, <, <=, > or >=",
                                                term.op, term.key));
        if (term.op == "IN" || term.op == "NOT IN") {
            const Token& lp = next();
            if (lp.kind != Tok::LParen) bad(s_, lp.pos, lp.raw, "expected '(' to start the IN list");
            std::vector<std::string> items;
            while (true) {
                const Token& v = next();
                if (v.kind != Tok::Quoted) bad(s_, v.pos, v.raw, "expected a quoted string in the IN list");
                if (++in_items_ > kMaxFilterInItems)
                    bad(s_, v.pos, v.raw,
                        fmt::format("IN lists of a filter hold at most {} values in all; split the search or "
                                    "filter the rest in pandas",
                                    kMaxFilterInItems));
                items.push_back(v.text);
                const Token& sep = next();
                if (sep.kind == Tok::RParen) break;
                if (sep.kind != Tok::Comma) bad(s_, sep.pos, sep.raw, "expected ',' or ')' in the IN list");
            }
            term.value = std::move(items);
            return term;
        }
        const Token& v = next();
        if (numeric) {
            if (v.kind != Tok::Number) {
                bad(s_, v.pos, v.raw,
                    fmt::format("expected a number to compare '{}' with{}", term.key,
                                v.kind == Tok::Quoted ? " (numbers are written without quotes)" : ""));
            }
            std::string text = v.text;
            char* end = nullptr;
            double d = std::strtod(text.c_str(), &end);
            if (end != text.c_str() + text.size()) bad(s_, v.pos, v.raw, "malformed number");
            term.value = d;
        } else {
            if (v.kind != Tok::Quoted)
                bad(s_, v.pos, v.raw,
                    fmt::format("expected a quoted string to compare '{}' with (e.g. '{}')", term.key, v.text));
            term.value = v.text;
        }
        return term;
    }

    const Token& peek() const { return toks_[i_]; }
    const Token& next() {
        const Token& t = toks_[i_];
        if (t.kind != Tok::End) ++i_;
        return t;
    }
    bool at_end() const { return toks_[i_].kind == Tok::End; }
    std::string_view source() const { return s_; }

private:
    std::string_view s_;
    std::vector<Token> toks_;
    size_t i_ = 0;
    size_t in_items_ = 0;
};

} // namespace

bool numeric_attribute(std::string_view name) { return name == "start_time" || name == "end_time"; }

std::vector<Term> parse_filter(std::string_view filter) { return Parser(filter).filter(); }

OrderKey parse_order_key(std::string_view text) {
    Parser p(text);
    OrderKey key;
    if (p.at_end())
        throw_error(ErrorKind::InvalidArgument,
                    "empty order_by item: write e.g. 'metrics.auc DESC' or 'start_time'");
    p.key(key.entity, key.key, "an order_by key");
    const auto& t = p.next();
    if (t.kind == Tok::End) return key;
    std::string dir = upper(t.text);
    if (t.kind == Tok::Ident && (dir == "ASC" || dir == "DESC")) {
        key.ascending = dir == "ASC";
        const auto& end = p.next();
        if (end.kind == Tok::End) return key;
        bad(text, end.pos, end.raw, "nothing may follow ASC/DESC in an order_by item");
    }
    bad(text, t.pos, t.raw, "expected ASC or DESC after the order_by key");
}

} // namespace keel::tracking
