"""Rank a batch of papers for a subscriber's keywords: lexical BM25 with phrases and a floor.

The package is split by job: `text` (folding, tokens, stems), `field` (one BM25 index per
field), `index` (`PaperIndex`: the batch's fields, spellings, duplicates, embeddings),
`scoring` (`Profile`, `rank_many`, the picks, followed authors, votes), `fusion` (the hybrid
score) and `trending` (the day's most-upvoted papers). It is pure: papers and profiles in,
`Ranked` values out. Build the index once per batch of papers, then rank any number of
profiles against it: score vectors are cached per term and per keyword, and `rank_many` scores
a chunk of profiles as (profile, keyword, paper) arrays, with no loop over profile x paper.

Rules
- Tokens: NFKC, accents stripped, case-folded; a token is a run of letters or a run of digits,
  so hyphens, spaces and punctuation are all boundaries ("test-time" == "test time", "Lean4"
  contains "lean") and a keyword never matches inside a longer word ("Lean" is not in "clean",
  "RL" is not in "world"). Tokens are stemmed by the Snowball English stemmer ("proofs" ==
  "proof"), and acronym plurals it leaves alone are folded too ("LLMs" == "LLM"). No stopword
  list: BM25's idf already makes common words cheap.
- A keyword word written as an acronym (two capitals or more: "CLIP", "MoE", "LLMs") that the
  batch's papers also write as an acronym matches only papers that write it so (a plural "s"
  aside), not another word of its stem: "CLIP" is not in "gradient clipping", nor in "we clip
  gradients". A keyword typed in capitals ("TEST-TIME") whose words no paper writes so is
  matched as usual, and the keyword's other spellings (an acronym written out, where a paper
  defines it) are not affected.
- Index: one BM25 index (Lucene's variant, as bm25s computes it: `field.py`) per field, title
  and abstract. A field is indexed as its tokens plus every adjacent pair of tokens as one extra
  term ("test time"), so a phrase is a term with its own document frequency, scored like any
  word.
- A keyword matches a field whole when all its tokens occur in it. Its score there is: one
  word, the BM25 of the token; several words in phrase (each adjacent pair of the keyword occurs
  as a pair in the field), the BM25 of the tokens plus that of the pairs; several words
  scattered, SCATTERED_WEIGHT x the BM25 of the tokens. A phrase of three or more words is in
  phrase only where its words follow each other in order ("Sleep-time Compute ... at
  Test-time" holds "test time" and "time compute" but not "test-time compute"). Keywords
  with the same tokens or spellings ("LLM", "LLMs"; "MoE", "mixture of experts") count once,
  under the first one written.
- A keyword's score in a paper is log(1 + TITLE_WEIGHT x title + abstract): BM25 of a phrase in
  a short title runs an order of magnitude above an abstract mention, and the logarithm keeps
  one such keyword from drowning every other. A paper's score is its best keyword plus
  SECONDARY_WEIGHT x the others, plus WORDS_WEIGHT x log(1 + the BM25 of each keyword's words
  one by one, wherever they occur, function words left out). So several keywords count, yet
  one keyword squarely in the title and abstract beats three brushed once in the abstract; and
  a paper holding only some words of a keyword ("time" for "test-time") scores through those
  words alone, is listed as "some words" and is never picked on that alone.
- `matched` lists, in profile order, the keywords that matched and the fields where they did
  ("title", "abstract"); for a paper holding no keyword whole, the keywords of which it holds
  "some words".
- Spellings: a keyword also matches as the batch's papers spell it (`acronyms.py`): an acronym
  a paper defines, "mixture-of-experts (MoE)", makes `MoE` and `mixture of experts` one
  keyword, also inside a longer keyword ("CoT compression" finds "chain-of-thought
  compression"); a paper that defines the acronym as something else does not match it
  through the acronym. A multi-word keyword also matches closed up when a paper writes it so
  ("multi-agent", "multiagent"), and a closed word of a keyword hyphenated when a paper
  hyphenates it ("pretraining", "pre-training"; never "notable" as "not able", which nobody
  hyphenates). A keyword's score is the best of its spellings.
- Exclusion: a paper where an `exclude` keyword occurs in the title or abstract (in phrase, for
  several words: "survey paper" must not exclude every abstract saying "this paper ... survey")
  (in any spelling) is dropped from the ranking entirely.
- Near-duplicates (`duplicates.py`: the same work under two titles): only the best-ranked of
  a group stays in a profile's ranking.
- Order: score (rounded to SCORE_DECIMALS) descending, then upvotes descending (unknown counts as
  0), then title. Upvotes only order papers of equal score: they never lift one above another.
- A keyword written as a sentence (LONG_KEYWORD_WORDS content words or more: "memory beyond
  the context window") rarely occurs whole: a paper holding MOST_WORDS_FRACTION of its content
  words in its title or in its abstract is eligible for the picks on them, listed as "most
  words" (its score is still that of the words alone).
- Floor: a paper is picked only when a keyword occurs whole in it (or most words of a long
  one; or, hybrid, when it is close in meaning) and its score is at least FLOOR_FRACTION x the best paper's score in this
  ranking; a profile that matches nothing gets no picks: there is no filler. The picks are the
  first `max_papers` papers in rank order that clear the floor. The floor is relative because
  BM25's scale depends on the batch and on the query: no absolute constant fits all.
- Hybrid (when the index has paper embeddings, `Semantic`): see `fusion.fuse`.
- Followed authors (`Profile.authors`): a paper one of whose named authors is followed is kept
  and picked whatever its keywords say, ranked ahead of the keyword picks, and explained as
  ("author",) under the author's name; an exclude still drops it. Dumps that give only a count
  of authors match no one.
- Votes (`Profile.liked`, `Profile.disliked`: paper ids, from this batch or earlier ones, whose
  vectors `Semantic.paper_vectors` holds): in hybrid ranking, LIKE_WEIGHT x a paper's mean
  cosine to the liked papers minus DISLIKE_WEIGHT x its mean cosine to the disliked ones is
  added to its similarity to the profile before fusion; excluded papers stay out.
- Trending (`trending`): the day's most-upvoted papers, apart from the picks (its docstring). The constants were
  tuned on bench/eval (bench/relevance.py prints a leave-one-profile-out check).
"""

from newsletter.ranking.index import PaperIndex, Semantic
from newsletter.ranking.scoring import Profile, rank, rank_many, rank_papers
from newsletter.ranking.text import keyword_terms, tokenize
from newsletter.models import Trending
from newsletter.ranking.trending import trending

__all__ = [
    "PaperIndex",
    "Profile",
    "Semantic",
    "Trending",
    "keyword_terms",
    "rank",
    "rank_many",
    "rank_papers",
    "tokenize",
    "trending",
]
