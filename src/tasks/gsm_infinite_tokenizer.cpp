// GSM-Infinite tokenizer (docs/tasks.md 3.4). Ids below kFirstWord are fixed by construction, so a
// saved vocabulary is checked against them on load and only the word list is free.
#include "hypnos/tasks/gsm_infinite_tokenizer.h"

#include <set>

namespace hypnos::tasks {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_mark(char c) {
  return GsmTokenizer::kPunctuation.find(c) != std::string_view::npos;
}

/// kNumberBase + v for a digit word with no leading zero and v <= 1000; kUnk for another digit
/// word; -1 for a word with a non-digit.
int64_t number_id(const std::string& word) {
  for (char c : word) {
    if (c < '0' || c > '9') return -1;
  }
  if (word.size() > 4 || (word.size() > 1 && word[0] == '0')) return GsmTokenizer::kUnk;
  const int64_t v = std::stoll(word);
  return v <= GsmTokenizer::kMaxNumber ? GsmTokenizer::kNumberBase + v : GsmTokenizer::kUnk;
}

std::set<std::string> words_of(const std::vector<std::string>& texts) {
  std::set<std::string> words;  // std::string orders bytewise (char_traits compares unsigned)
  for (const std::string& text : texts) {
    for (std::string& p : GsmTokenizer::pieces(text)) {
      if (!(p.size() == 1 && is_mark(p[0])) && number_id(p) == -1) words.insert(std::move(p));
    }
  }
  return words;
}

}  // namespace

GsmTokenizer::GsmTokenizer() {
  tokens_ = {"<pad>", "<bos>", "<eos>", "<unk>"};
  for (int64_t v = 0; v <= kMaxNumber; ++v) tokens_.push_back(std::to_string(v));
  for (char c : kPunctuation) tokens_.emplace_back(1, c);
}

void GsmTokenizer::add_word(const std::string& word) {
  words_.emplace(word, static_cast<int64_t>(tokens_.size()));
  tokens_.push_back(word);
}

GsmTokenizer GsmTokenizer::from_texts(const std::vector<std::string>& texts) {
  GsmTokenizer tok;
  for (const std::string& w : words_of(texts)) tok.add_word(w);
  return tok;
}

std::vector<std::string> GsmTokenizer::pieces(std::string_view text) {
  std::vector<std::string> out;
  std::string word;
  auto flush = [&] {
    if (!word.empty()) out.push_back(std::move(word));
    word.clear();
  };
  for (char c : text) {
    if (is_space(c)) {
      flush();
    } else if (is_mark(c)) {
      flush();
      out.emplace_back(1, c);
    } else {
      word.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
    }
  }
  flush();
  return out;
}

std::vector<int64_t> GsmTokenizer::encode(std::string_view text, int64_t* unknown) const {
  std::vector<int64_t> ids;
  for (const std::string& p : pieces(text)) {
    int64_t id;
    if (p.size() == 1 && is_mark(p[0])) {
      id = kPunctBase + static_cast<int64_t>(kPunctuation.find(p[0]));
    } else if ((id = number_id(p)) == -1) {
      const auto it = words_.find(p);
      id = it == words_.end() ? kUnk : it->second;
    }
    if (id == kUnk && unknown) ++*unknown;
    ids.push_back(id);
  }
  return ids;
}

const std::string& GsmTokenizer::token(int64_t id) const {
  if (id < 0 || id >= vocab_size()) {
    throw std::out_of_range("GsmTokenizer::token: id " + std::to_string(id) + " outside [0, " +
                            std::to_string(vocab_size()) + ")");
  }
  return tokens_[id];
}

std::string GsmTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ' ';
    out += token(ids[i]);
  }
  return out;
}

int64_t GsmTokenizer::extend(const std::vector<std::string>& texts) {
  int64_t added = 0;
  for (const std::string& w : words_of(texts)) {
    if (!words_.count(w)) {
      add_word(w);
      ++added;
    }
  }
  return added;
}

void GsmTokenizer::save(const std::string& path) const {
  std::ofstream out(path);
  if (!out) throw std::runtime_error("cannot write vocabulary '" + path + "'");
  for (const std::string& t : tokens_) out << t << '\n';
  if (!out) throw std::runtime_error("failed writing vocabulary '" + path + "'");
}

GsmTokenizer GsmTokenizer::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open vocabulary '" + path + "'");
  GsmTokenizer tok;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    const std::string where = path + ":" + std::to_string(line_no);
    const int64_t id = line_no - 1;
    if (id < kFirstWord) {
      if (line != tok.tokens_[id]) {
        throw std::runtime_error(where + ": expected the fixed token '" + tok.tokens_[id] +
                                 "' for id " + std::to_string(id) + ", found '" + line + "'");
      }
      continue;
    }
    const auto p = pieces(line);
    if (p.size() != 1 || p[0] != line || number_id(line) != -1 ||
        (line.size() == 1 && is_mark(line[0]))) {
      throw std::runtime_error(where + ": '" + line + "' is not a lower-case word token");
    }
    if (tok.words_.count(line)) throw std::runtime_error(where + ": duplicate word '" + line + "'");
    tok.add_word(line);
  }
  if (line_no < kFirstWord) {
    throw std::runtime_error(path + ": " + std::to_string(line_no) + " lines, expected at least " +
                             std::to_string(kFirstWord) + " (the fixed tokens)");
  }
  return tok;
}

}  // namespace hypnos::tasks
