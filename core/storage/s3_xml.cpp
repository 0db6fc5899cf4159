// core/storage/s3_xml.cpp
#include "s3_xml.hpp"

#include <cstdint>
#include <cstdlib>

namespace keel::storage::detail {

namespace {

void append_utf8(std::string& out, uint32_t code) {
    if (code < 0x80) {
        out += static_cast<char>(code);
    } else if (code < 0x800) {
        out += static_cast<char>(0xC0 | (code >> 6));
        out += static_cast<char>(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
        out += static_cast<char>(0xE0 | (code >> 12));
        out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (code & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (code >> 18));
        out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (code & 0x3F));
    }
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

} // namespace

std::vector<std::string_view> xml_elements(std::string_view xml, std::string_view tag) {
    std::vector<std::string_view> out;
    std::string open = "<";
    open.append(tag);
    std::string close = "</";
    close.append(tag).append(">");
    size_t at = 0;
    while ((at = xml.find(open, at)) != std::string_view::npos) {
        size_t after = at + open.size();
        if (after >= xml.size()) break;
        char next = xml[after];
        if (next != '>' && next != ' ' && next != '/') {  // <KeyCount> when looking for <Key>
            at = after;
            continue;
        }
        size_t end_of_open = xml.find('>', after);
        if (end_of_open == std::string_view::npos) break;
        if (xml[end_of_open - 1] == '/') {  // <Key/>
            out.emplace_back();
            at = end_of_open + 1;
            continue;
        }
        size_t inner = end_of_open + 1;
        size_t end = xml.find(close, inner);
        if (end == std::string_view::npos) break;
        out.push_back(xml.substr(inner, end - inner));
        at = end + close.size();
    }
    return out;
}

std::optional<std::string> xml_text(std::string_view xml, std::string_view tag) {
    auto found = xml_elements(xml, tag);
    if (found.empty()) return std::nullopt;
    return xml_decode(found.front());
}

std::string xml_decode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '&') {
            out += text[i];
            continue;
        }
        size_t semi = text.find(';', i);
        if (semi == std::string_view::npos) {
            out += text.substr(i);
            break;
        }
        std::string_view entity = text.substr(i + 1, semi - i - 1);
        if (entity == "amp") out += '&';
        else if (entity == "lt") out += '<';
        else if (entity == "gt") out += '>';
        else if (entity == "quot") out += '"';
        else if (entity == "apos") out += '\'';
        else if (entity.size() > 1 && entity[0] == '#') {
            bool is_hex = entity[1] == 'x' || entity[1] == 'X';
            std::string digits(entity.substr(is_hex ? 2 : 1));
            char* end = nullptr;
            unsigned long code = std::strtoul(digits.c_str(), &end, is_hex ? 16 : 10);
            if (digits.empty() || *end != '\0' || code > 0x10FFFF) {
                out += text.substr(i, semi - i + 1);
            } else {
                append_utf8(out, static_cast<uint32_t>(code));
            }
        } else {
            out += text.substr(i, semi - i + 1);  // unknown: left as is
        }
        i = semi;
    }
    return out;
}

std::string url_decode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '%' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 && hex_value(text[i + 2]) >= 0) {
            out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
            i += 2;
        } else if (text[i] == '+') {
            out += ' ';
        } else {
            out += text[i];
        }
    }
    return out;
}

} // namespace keel::storage::detail
