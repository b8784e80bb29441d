// The three GSM-Infinite "realistic" templates of docs/tasks.md 3.1 (zoo, teachers, movies): layer
// names, category strings and core names, exactly as the original uses them (accents included).
#pragma once
#include <string>
#include <vector>

namespace hypnos::tasks {

struct GsmTemplate {
  std::string name;    ///< "zoo" | "teachers" | "movies" (JSONL `template`)
  std::string layer0;  ///< what the tops are, e.g. "Location"
  std::string cat1;    ///< layer-1 category, e.g. "total number of adult animals"
  std::string cat2;    ///< layer-2 category, e.g. "total number of newborn animal children"
  std::string avg;     ///< e.g. "average number of newborn children"
  std::vector<std::vector<std::string>> tops;   ///< core top subcategories
  std::vector<std::vector<std::string>> items;  ///< core item subcategories
};

/// zoo, teachers, movies, in that order.
const std::vector<GsmTemplate>& gsm_templates();

/// The fixed words of problem and question sentences (docs/tasks.md 3.1 "Sentences", "Question")
/// and the answer marker, as whole phrases.
const std::vector<std::string>& gsm_sentence_phrases();

/// Every core string (template names, categories, names, sentence phrases): the texts whose words
/// make the core of the GSM vocabulary (docs/tasks.md 3.4 tokenizer, step 4; distractor lists add
/// more).
std::vector<std::string> gsm_core_texts();

}  // namespace hypnos::tasks
