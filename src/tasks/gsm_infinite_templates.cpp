// Data of the GSM-Infinite core templates (docs/tasks.md 3.1 tables). Distractor lists live in
// data/gsm_infinite/ and are loaded by the generator, not compiled in.
#include "hypnos/tasks/gsm_infinite_templates.h"

namespace hypnos::tasks {

const std::vector<GsmTemplate>& gsm_templates() {
  static const std::vector<GsmTemplate> templates{
      {"zoo",
       "Location",
       "total number of adult animals",
       "total number of newborn animal children",
       "average number of newborn children",
       {{"Beverly Forest", "Cedar Valley", "Oakridge Riverside", "Pine Ridge", "Maple Creek"},
        {"South Zoo", "Jefferson Circus", "Mayer Aquarium", "Bundle Ranch", "Hamilton Farm"}},
       {{"adult bear", "adult wolf", "adult deer", "adult fox", "adult racoon"},
        {"adult eagle", "adult parrot", "adult owl", "adult blue jay", "adult crow"}}},
      {"teachers",
       "City",
       "total number of schools",
       "total number of teachers from all schools",
       "average number of teachers",
       {{"Evervale City", "Hawkesbury", "Glenfield City", "Westhaven City", "Brightford"},
        {"Riverton City", "Clearwater Bay", "Shoreline City", "Oakbridge City", "Ruby Bay"}},
       {{"elementary school", "private middle school", "public highschool",
         "regional medical school", "culinarian school"}}},
      {"movies",
       "Festivals",
       "total number of movies",
       "total number of movie nominations",
       "average number of nominations",
       {{"Taylor Movie Festival", "Verdi Movie Festival", "West Sahara Movie Festival",
         "Northwood Movie Festival", "Golden Banana Movie Festival"},
        {"Festival Lumière de Valmont", "Rêves de Belleville", "Cinéma de Montreval",
         "Festival de Clairmont", "Festival de Saint-Rivage"}},
       {{"upbeat metropolis comedy", "solemn period drama", "futuristic sci-fi movie",
         "calm road movie", "intense detective thriller"}}},
  };
  return templates;
}

const std::vector<std::string>& gsm_sentence_phrases() {
  static const std::vector<std::string> phrases{"The number of",
                                                "equals",
                                                "plus",
                                                "times",
                                                "the sum of",
                                                "and",
                                                "the difference between",
                                                "exists, and its number is greater than 0",
                                                "is greater than 0",
                                                "What is the",
                                                "How many",
                                                "does",
                                                "have?",
                                                "in",
                                                "per",
                                                "answer:"};
  return phrases;
}

std::vector<std::string> gsm_core_texts() {
  std::vector<std::string> texts = gsm_sentence_phrases();
  for (const GsmTemplate& t : gsm_templates()) {
    texts.insert(texts.end(), {t.layer0, t.cat1, t.cat2, t.avg});
    for (const auto& group : t.tops) texts.insert(texts.end(), group.begin(), group.end());
    for (const auto& group : t.items) texts.insert(texts.end(), group.begin(), group.end());
  }
  return texts;
}

}  // namespace hypnos::tasks
