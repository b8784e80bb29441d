// Tokenizer files, their hash, and ids -> text. The byte-level decoder mirrors `tokenizers`'
// ByteLevel::decode_chain: every token's characters through the inverse of bytes_to_unicode (a
// token with an unmapped character keeps its own bytes), then one lossy UTF-8 conversion.
#include "hypnos/tasks/tokenizer_vocab.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "hypnos/io/sha256.h"

namespace hypnos::tasks {
namespace {

namespace fs = std::filesystem;

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open tokenizer file '" + path + "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

nlohmann::json parse_json(const std::string& path) {
  try {
    return nlohmann::json::parse(read_all(path));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": not JSON (" + std::string(e.what()).substr(0, 160) + ")");
  }
}

/// The code points of a valid UTF-8 string (vocabulary entries are JSON strings, hence valid).
std::vector<uint32_t> code_points(const std::string& s) {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<uint8_t>(s[i]);
    const int n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    uint32_t c = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
    for (int k = 1; k < n && i + k < s.size(); ++k) {
      c = (c << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
    }
    out.push_back(c);
    i += n;
  }
  return out;
}

bool has_byte_level_decoder(const nlohmann::json& decoder) {
  if (!decoder.is_object() || !decoder.contains("type")) return false;
  if (decoder["type"] == "ByteLevel") return true;
  if (decoder["type"] == "Sequence" && decoder.contains("decoders")) {
    for (const auto& d : decoder["decoders"]) {
      if (has_byte_level_decoder(d)) return true;
    }
  }
  return false;
}

}  // namespace

std::vector<std::string> tokenizer_files(const std::string& dir) {
  const fs::path d(dir);
  if (fs::is_regular_file(d / "tokenizer.json")) return {(d / "tokenizer.json").string()};
  if (fs::is_regular_file(d / "vocab.json") && fs::is_regular_file(d / "merges.txt")) {
    return {(d / "vocab.json").string(), (d / "merges.txt").string()};
  }
  throw std::runtime_error("no tokenizer in '" + dir +
                           "': expected tokenizer.json, or vocab.json and merges.txt");
}

std::string tokenizer_sha256(const std::string& dir) {
  io::Sha256 hash;
  std::vector<char> buffer(size_t{1} << 20);
  for (const std::string& path : tokenizer_files(dir)) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open tokenizer file '" + path + "'");
    while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0) {
      hash.update(buffer.data(), static_cast<size_t>(in.gcount()));
    }
  }
  return hash.hex_digest();
}

std::vector<uint32_t> byte_level_code_points() {
  std::vector<uint32_t> map(256, 0);
  std::vector<bool> printable(256, false);
  for (int b = '!'; b <= '~'; ++b) printable[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) map[b] = printable[b] ? static_cast<uint32_t>(b) : next++;
  return map;
}

std::string utf8_lossy(const std::string& bytes) {
  static const std::string kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(bytes.size());
  const size_t n = bytes.size();
  auto at = [&](size_t i) { return static_cast<uint8_t>(bytes[i]); };
  for (size_t i = 0; i < n;) {
    const uint8_t b = at(i);
    if (b < 0x80) {
      out += static_cast<char>(b);
      ++i;
      continue;
    }
    // Length and the allowed range of the second byte (Unicode Table 3-7, well-formed UTF-8).
    size_t len = 0;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    }
    if (len == 0) {  // not a lead byte
      out += kReplacement;
      ++i;
      continue;
    }
    size_t k = 1;  // bytes of the sequence that are valid so far
    for (; k < len && i + k < n; ++k) {
      const uint8_t c = at(i + k);
      const bool ok = k == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
      if (!ok) break;
    }
    if (k == len) {
      out.append(bytes, i, len);
    } else {
      out += kReplacement;  // the maximal valid prefix of a sequence is one replacement
    }
    i += k;
  }
  return out;
}

TokenizerVocab TokenizerVocab::load(const std::string& dir) {
  const std::vector<std::string> files = tokenizer_files(dir);
  TokenizerVocab v;
  auto put = [&](int64_t id, const std::string& token, bool special, const std::string& where) {
    if (id < 0 || id > (int64_t{1} << 31)) {
      throw std::runtime_error(where + ": token '" + token + "' has id " + std::to_string(id) +
                               ", expected 0..2^31");
    }
    if (id >= v.size()) {
      v.tokens_.resize(id + 1);
      v.special_.resize(id + 1, 0);
    }
    v.tokens_[id] = token;
    v.special_[id] = special ? 1 : 0;
  };
  const std::string& path = files[0];
  const nlohmann::json j = parse_json(path);
  if (!j.is_object()) throw std::runtime_error(path + ": not a JSON object");
  if (files.size() == 2) {  // vocab.json: {token: id}, byte-level by the GPT-2 convention
    for (const auto& [token, id] : j.items()) {
      if (!id.is_number_integer()) throw std::runtime_error(path + ": id of '" + token + "'");
      put(id.get<int64_t>(), token, false, path);
    }
    v.byte_level_ = true;
    return v;
  }
  if (!j.contains("model") || !j["model"].is_object() || !j["model"].contains("vocab")) {
    throw std::runtime_error(path + ": no model.vocab");
  }
  const nlohmann::json& vocab = j["model"]["vocab"];
  if (vocab.is_object()) {  // BPE, WordPiece, WordLevel: {token: id}
    for (const auto& [token, id] : vocab.items()) {
      if (!id.is_number_integer()) {
        throw std::runtime_error(path + ": model.vocab['" + token + "'] is not an integer id");
      }
      put(id.get<int64_t>(), token, false, path);
    }
  } else if (vocab.is_array()) {  // Unigram: [[token, score], ...], the id is the position
    for (size_t i = 0; i < vocab.size(); ++i) {
      if (!vocab[i].is_array() || vocab[i].empty() || !vocab[i][0].is_string()) {
        throw std::runtime_error(path + ": model.vocab[" + std::to_string(i) +
                                 "] is not [token, score]");
      }
      put(static_cast<int64_t>(i), vocab[i][0].get<std::string>(), false, path);
    }
  } else {
    throw std::runtime_error(path + ": model.vocab is neither an object nor an array");
  }
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const auto& t : j["added_tokens"]) {
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
          !t.contains("content") || !t["content"].is_string()) {
        throw std::runtime_error(path + ": an added_tokens entry lacks an integer id or content");
      }
      put(t["id"].get<int64_t>(), t["content"].get<std::string>(), t.value("special", false), path);
    }
  }
  v.byte_level_ = j.contains("decoder") && has_byte_level_decoder(j["decoder"]);
  return v;
}

const std::string& TokenizerVocab::token(int64_t id) const {
  if (id < 0 || id >= size()) {
    throw std::out_of_range("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                            std::to_string(size()) + ")");
  }
  return tokens_[id];
}

std::string TokenizerVocab::decode(const std::vector<int64_t>& ids, bool skip_special) const {
  std::vector<const std::string*> pieces;
  for (int64_t id : ids) {
    const std::string& t = token(id);  // checks the range
    if (skip_special && special_[id]) continue;
    pieces.push_back(&t);
  }
  if (!byte_level_) {
    std::string out;
    for (const std::string* p : pieces) out += *p;
    return out;
  }
  static const std::unordered_map<uint32_t, uint8_t> byte_of = [] {
    std::unordered_map<uint32_t, uint8_t> m;
    const std::vector<uint32_t> points = byte_level_code_points();
    for (int b = 0; b < 256; ++b) m[points[b]] = static_cast<uint8_t>(b);
    return m;
  }();
  std::string bytes;
  for (const std::string* p : pieces) {
    std::string mapped;
    bool all_mapped = true;
    for (uint32_t c : code_points(*p)) {
      const auto it = byte_of.find(c);
      if (it == byte_of.end()) {
        all_mapped = false;
        break;
      }
      mapped += static_cast<char>(it->second);
    }
    bytes += all_mapped ? mapped : *p;
  }
  return utf8_lossy(bytes);
}

}  // namespace hypnos::tasks
