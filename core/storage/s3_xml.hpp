// core/storage/s3_xml.hpp: just enough XML for S3's answers (ListObjectsV2 pages and <Error>
// documents): flat elements found by tag, entities decoded. Not a general XML parser.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keel::storage::detail {

//! The raw inner text of every <tag>...</tag> (or <tag/>, as empty) in xml, in order.
std::vector<std::string_view> xml_elements(std::string_view xml, std::string_view tag);
//! The decoded text of the first <tag> element, or nullopt when there is none.
std::optional<std::string> xml_text(std::string_view xml, std::string_view tag);
//! &amp; &lt; &gt; &quot; &apos; and numeric references decoded (as UTF-8).
std::string xml_decode(std::string_view text);
//! %XX sequences and '+' (a space) decoded, as in keys of an encoding-type=url listing (a '+' in a
//! key comes as %2B).
std::string url_decode(std::string_view text);

} // namespace keel::storage::detail
