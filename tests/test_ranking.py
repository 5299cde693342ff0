"""The ranker: matching rules, scoring order, the floor, exclusions, explanations, batching."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.acronyms import find_definitions
from newsletter.duplicates import duplicate_groups
from newsletter.models import KeywordMatch, Paper
from newsletter.ranking import (
    PaperIndex,
    Profile,
    keyword_terms,
    rank,
    rank_many,
    rank_papers,
    tokenize,
    trending,
)

FILLER = (
    "We study a broad question and report experiments on several public datasets, with "
    "ablations, error analysis and a discussion of limitations and future work."
)


def paper(title: str, abstract: str = FILLER, upvotes: int | None = None) -> Paper:
    return Paper(title=title, abstract=abstract, upvotes=upvotes)


# Background papers give BM25 a realistic document frequency for common words.
BACKGROUND = (
    paper("Scaling vision transformers", "We train larger vision models on more images."),
    paper("A benchmark for table understanding", "Tables are everywhere; we evaluate models."),
    paper("Sparse attention for long documents", "Attention over long inputs is costly."),
    paper("Federated training on phones", "Clients keep their data; a server aggregates."),
)


def titles(ranked: list) -> list[str]:
    return [item.paper.title for item in ranked]


def picked_titles(ranked: list) -> list[str]:
    return [item.paper.title for item in ranked if item.picked]


def run(papers: list[Paper], *keywords: str, exclude: tuple[str, ...] = (), top: int = 10):
    profile = Profile(keywords=keywords, exclude=exclude)
    return rank_papers([*papers, *BACKGROUND], profile, max_papers=top)


# Tokens and matching rules


def test_keyword_never_matches_inside_a_longer_word() -> None:
    papers = [
        paper("A clean world model for robots", "Clean rooms and world knowledge help planning."),
        paper("Lean proofs, checked", "We check proofs in Lean."),
        paper("RL fine-tuning of agents", "We apply RL to agents."),
    ]
    assert titles(run(papers, "Lean")) == ["Lean proofs, checked"]
    assert titles(run(papers, "RL")) == ["RL fine-tuning of agents"]


def test_a_keyword_written_as_an_acronym_matches_only_that_word() -> None:
    papers = [
        paper("Gradient clipping for stable RL", "We clip gradients and report clipped updates."),
        paper("Probing CLIP's image encoder", "CLIP embeddings of images and captions."),
        paper("Fine-tuning CLIPs for retrieval", "Several CLIP models, fine-tuned."),
    ]
    # "CLIP" and "clipping" share the stem "clip": only the papers that write CLIP match it.
    assert set(titles(run(papers, "CLIP"))) == {"Probing CLIP's image encoder", "Fine-tuning CLIPs for retrieval"}
    # Written in lower case, the keyword is a word like any other and keeps its stem; so is a
    # keyword typed in capitals whose words no paper writes as acronyms.
    assert len(run(papers, "clip")) == 3
    assert titles(run(papers, "GRADIENTS")) == ["Gradient clipping for stable RL"]
    # Beside the acronym, the keyword's other words still count as "some words".
    (clipping,) = [item for item in run(papers, "CLIP gradients") if item.paper.title.startswith("Gradient")]
    assert clipping.matched == (KeywordMatch("CLIP gradients", ("some words",)),)
    assert not clipping.picked


def test_case_folding_and_stemming() -> None:
    papers = [paper("PROOF search with language models", "A proof, found automatically.")]
    ranked = run(papers, "proofs")
    assert titles(ranked) == ["PROOF search with language models"]
    assert ranked[0].matched == (KeywordMatch("proofs", ("title", "abstract")),)
    assert tokenize("LLMs") == tokenize("llm")  # acronym plurals, which Snowball keeps
    assert tokenize("Schrödinger's ﬁelds") == tokenize("schrodinger s fields")


def test_hyphen_and_space_variants_are_the_same_keyword() -> None:
    assert keyword_terms("test-time scaling") == keyword_terms("Test Time  Scaling")
    papers = [
        paper("Test-Time Scaling for reasoning"),
        paper("Scaling test time compute", "More test time helps."),
    ]
    for keyword in ("test-time", "test time", "TEST-TIME"):
        assert set(titles(run(papers, keyword))) == {
            "Test-Time Scaling for reasoning",
            "Scaling test time compute",
        }


def test_some_words_of_a_keyword_are_listed_but_never_picked() -> None:
    papers = [paper("Time series forecasting", "We forecast over time with little data.")]
    (ranked,) = run(papers, "test-time")
    assert ranked.matched == (KeywordMatch("test-time", ("some words",)),)
    assert not ranked.picked  # "time" alone is not "test-time"
    # A function word alone matches nothing: "of" is no part of "mixture of experts".
    assert run([paper("Theory of mind", "A study of minds.")], "mixture of experts") == []


def test_phrase_scores_far_above_scattered_words() -> None:
    papers = [
        paper("Process supervision", "We train a reward model on step labels."),
        paper("Model merging", "We merge each model and report the reward it earns on tasks."),
    ]
    ranked = run(papers, "reward model")
    assert picked_titles(ranked) == ["Process supervision", "Model merging"]
    phrase, scattered = ranked[:2]
    assert phrase.score > 1.25 * scattered.score
    assert scattered.matched == (KeywordMatch("reward model", ("abstract",)),)


# Scoring order


def test_title_match_beats_abstract_match() -> None:
    papers = [
        paper("Diffusion models for audio", "We generate sound."),
        paper("Generating sound", "We generate sound with diffusion models."),
    ]
    assert titles(run(papers, "diffusion")) == ["Diffusion models for audio", "Generating sound"]


def test_one_keyword_squarely_beats_three_brushed_in_the_abstract() -> None:
    papers = [
        paper(  # squarely on one keyword: its title and its abstract
            "Theorem proving with language models",
            "We prove theorems automatically with language models and report results on "
            "standard theorem proving benchmarks.",
        ),
        paper(  # each of three keywords mentioned once, in passing
            "A short note on tooling",
            f"We describe the tooling of a research group. {FILLER} Our stack covers theorem "
            "proving, proof assistants such as Lean, and RL libraries, among many other "
            "packages we maintain for students and staff.",
        ),
    ]
    ranked = run(papers, "theorem proving", "Lean", "RL")
    assert picked_titles(ranked) == ["Theorem proving with language models", "A short note on tooling"]
    assert ranked[0].score > 1.5 * ranked[1].score
    assert len(ranked[1].matched) == 3


def test_several_keywords_rank_above_one_in_the_same_place() -> None:
    papers = [
        paper("Agents", "Language agents that call tools and plan with search."),
        paper("Planners", "Language agents that plan with search."),
    ]
    assert titles(run(papers, "tools", "agents")) == ["Agents", "Planners"]


def test_ties_are_broken_by_upvotes_then_title() -> None:
    same = "Speculative decoding speeds up inference."
    papers = [
        paper("B speculative decoding", same, upvotes=3),
        paper("A speculative decoding", same, upvotes=3),
        paper("C speculative decoding", same, upvotes=40),
    ]
    ranked = run(papers, "speculative decoding")
    assert len({item.score for item in ranked}) == 1
    assert titles(ranked) == [
        "C speculative decoding",
        "A speculative decoding",
        "B speculative decoding",
    ]


def test_upvotes_never_lift_a_weaker_or_unrelated_paper() -> None:
    papers = [
        paper("Quantization of large models", "We quantize weights to four bits.", upvotes=0),
        paper("A viral paper", "Everyone loves it; quantization is mentioned once.", upvotes=999),
        paper("Another viral paper", "It has nothing to do with the subject.", upvotes=5000),
    ]
    ranked = run(papers, "quantization")
    assert titles(ranked) == ["Quantization of large models", "A viral paper"]


# Exclusion, floor and cut


def test_excluded_papers_are_dropped_and_never_picked() -> None:
    papers = [
        paper("A survey of retrieval-augmented generation"),
        paper("Retrieval-augmented generation with long context"),
    ]
    ranked = run(papers, "retrieval-augmented generation", exclude=("Survey",))
    assert titles(ranked) == ["Retrieval-augmented generation with long context"]
    assert ranked[0].picked


def test_a_multi_word_exclusion_needs_the_phrase() -> None:
    papers = [paper("Mixture of experts routing", "This paper is not a survey of anything.")]
    assert titles(run(papers, "mixture of experts", exclude=("survey paper",))) == [
        "Mixture of experts routing"
    ]
    assert run(papers, "mixture of experts", exclude=("this paper",)) == []


def test_a_profile_with_nothing_relevant_gets_no_picks() -> None:
    papers = [paper("Graph neural networks for molecules", "Message passing on graphs.")]
    assert run(papers, "speech recognition", "Lean") == []
    assert run(papers, "!!!", "") == []
    assert rank_papers([], Profile(("graph",)), max_papers=5) == []


def test_the_floor_leaves_out_a_passing_mention_when_strong_matches_exist() -> None:
    papers = [
        paper("Sparse autoencoders find features", "Sparse autoencoders on model activations."),
        paper("Interpretability at scale", "Sparse autoencoders, circuits and probes compared."),
        paper(
            "A large benchmark of many things",
            "We evaluate tokenizers, optimizers, data mixtures, decoding strategies, reward "
            "functions, long-context retrieval, agents, tools and, briefly, sparse autoencoders, "
            "together with dozens of other methods across hundreds of tasks and languages.",
        ),
    ]
    ranked = run(papers, "sparse autoencoders")
    assert len([item for item in ranked if item.matched[0].fields != ("some words",)]) == 3
    # every match is listed ...
    assert picked_titles(ranked) == [  # ... but the passing mention is below the floor
        "Sparse autoencoders find features",
        "Interpretability at scale",
    ]


def test_a_weaker_keyword_keeps_its_best_paper_beside_a_strong_one() -> None:
    papers = [
        paper(f"Mixture of experts routing {n}", "Mixture of experts layers route tokens.")
        for n in range(3)
    ] + [
        paper("Efficient serving", "We serve models faster; tool use helps a little."),
        paper("Fairness audits", "We use interviews; no single tool settles fairness."),
    ]
    ranked = run(papers, "mixture of experts", "tool use")
    assert len(ranked) == 5
    # Scores are log-compressed, so a strong keyword does not drown a modest one; the
    # scattered words ("we use interviews; no single tool") stay below the floor.
    assert picked_titles(ranked)[3:] == ["Efficient serving"]


def test_max_papers_cuts_the_picks_and_keeps_the_rest_listed() -> None:
    papers = [paper(f"Protein design {n}", "Protein structure and design.") for n in range(5)]
    ranked = run(papers, "protein", top=2)
    assert len(ranked) == 5
    assert [item.picked for item in ranked] == [True, True, False, False, False]
    assert not any(item.picked for item in run(papers, "protein", top=0))
    with pytest.raises(ValueError, match="max_papers"):
        run(papers, "protein", top=-1)


def test_matched_says_which_keywords_matched_and_where() -> None:
    papers = [paper("World models for robotics", "We learn a world model and plan with RL.")]
    ranked, *partial = run(papers, "RL", "world model", "speech", "robotics", "LLMs", "llm")
    assert all(item.matched == (KeywordMatch("world model", ("some words",)),) for item in partial)
    assert ranked.matched == (
        KeywordMatch("RL", ("abstract",)),
        KeywordMatch("world model", ("title", "abstract")),
        KeywordMatch("robotics", ("title",)),
    )


def test_rank_many_agrees_with_rank() -> None:
    papers = [
        paper("Lean proofs at scale", "Theorem proving in Lean with RL.", upvotes=4),
        paper("Reward models for RL", "A reward model trained on preferences.", upvotes=9),
        paper("A survey of theorem proving", "Provers, Lean and more."),
        paper("Clean data", "Cleaning the world of web text."),
        *BACKGROUND,
    ]
    profiles = [
        Profile(("Lean",)),
        Profile(("theorem proving", "Lean", "RL"), exclude=("survey",)),
        Profile(("reward model", "RL", "world", "data", "attention")),
        Profile(("nothing here",)),
        Profile(()),
    ]
    index = PaperIndex.build(papers)
    expected = [rank(index, profile, max_papers=2) for profile in profiles]
    assert rank_many(index, profiles, max_papers=2) == expected
    picks = rank_many(index, profiles, max_papers=2, picks_only=True)
    assert picks == [[item for item in ranked if item.picked] for ranked in expected]


WORDS = ("model", "proof", "agent", "vision", "sparse", "graph", "lean", "clean", "world", "rl")


@given(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=4),
    st.sampled_from((" ", "-", " - ", "/")),
    st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=8), max_size=6),
    st.integers(min_value=0, max_value=4),
)
def test_any_keyword_finds_its_own_title_and_the_ranking_is_well_formed(
    words: list[str], separator: str, others: list[list[str]], max_papers: int
) -> None:
    keyword = separator.join(words).upper()
    papers = [paper(" ".join(words)), *(paper(" ".join(o), " ".join(reversed(o))) for o in others)]
    ranked = rank_papers(papers, Profile((keyword,)), max_papers=max_papers)
    own = [item for item in ranked if item.paper.title == " ".join(words)]
    assert own and "title" in own[0].matched[0].fields
    assert [item.score for item in ranked] == sorted((item.score for item in ranked), reverse=True)
    assert all(item.score > 0 and item.matched for item in ranked)
    assert sum(item.picked for item in ranked) <= max_papers
    assert ranked[0].picked == (max_papers > 0)  # the best paper always clears the floor


# The real captures


def test_real_dumps_theorem_proving_and_lean(shared_dumps: Path) -> None:
    sources = pytest.importorskip("newsletter.sources", reason="the dump parser is not there yet")
    papers: list[Paper] = []
    for path in sorted(shared_dumps.iterdir()):
        modified = date.fromtimestamp(path.stat().st_mtime)
        parsed = sources.parse_dump(
            path.read_text(encoding="utf-8"),
            source_name=path.name,
            fallback_date=sources.fallback_date_for(path.name, modified),
        )
        papers.extend(parsed.papers)
    assert len(papers) > 200

    ranked = rank_papers(papers, Profile(("theorem proving", "Lean")), max_papers=5)
    picks = [item for item in ranked if item.picked]
    assert len(picks) == 5
    assert any("theorem prov" in item.paper.title.lower() for item in picks[:3])
    words = {paper.paper_id: set(tokenize(f"{paper.title} {paper.abstract}")) for paper in papers}
    topic = {"lean", "theorem"}
    clean_only = {key for key, tokens in words.items() if "clean" in tokens and not topic & tokens}
    assert clean_only, "the captures have a paper saying 'clean', not 'Lean' nor 'theorem'"
    lean = [item for item in ranked if any(m.keyword == "Lean" for m in item.matched)]
    assert lean and not clean_only & {item.paper.paper_id for item in lean}
    assert all(words[item.paper.paper_id] & topic for item in picks)


@given(st.text(max_size=80) | st.text(alphabet="Ab9_-. \u00e9\u00df\u0130K", max_size=40))
def test_the_ascii_shortcut_tokenizes_as_the_rule_says(text: str) -> None:
    from newsletter.ranking.text import _ASCII_TOKEN, TOKEN, fold

    folded = fold(text)
    if folded.isascii():
        assert _ASCII_TOKEN.findall(folded) == TOKEN.findall(folded)


# BM25 (field.py): Lucene's variant as bm25s computes it, to the last bit


def _assert_field_scores_like_bm25s(documents: list[list[str]]) -> None:
    import bm25s
    import numpy as np

    from newsletter.ranking.field import BM25_B, BM25_K1, Field
    from newsletter.ranking.text import pairs

    field = Field.from_tokens(documents)
    indexed = [tokens + pairs(tokens) for tokens in documents]
    terms = {term for terms in indexed for term in terms}
    if not terms:
        assert all(not field.term_scores(term).any() for term in ("a", "a b"))
        return
    reference = bm25s.BM25(method="lucene", k1=BM25_K1, b=BM25_B)
    reference.index(indexed, show_progress=False)
    for term in sorted(terms) + ["absent", "a absent", "absent a"]:
        assert (term in field) == (term in reference.vocab_dict), term
        expected = reference.get_scores([term]) if term in reference.vocab_dict else np.zeros(len(documents), np.float32)
        got = field.term_scores(term)
        assert got.dtype == np.float32 and got.tobytes() == expected.tobytes(), term


@given(st.lists(st.lists(st.sampled_from("a b c d e".split()), max_size=30), min_size=1, max_size=10))
def test_field_scores_are_bm25s_scores_to_the_bit(documents: list[list[str]]) -> None:
    _assert_field_scores_like_bm25s(documents)


def test_field_scores_are_bm25s_scores_on_the_real_captures(shared_dumps: Path) -> None:
    sources = pytest.importorskip("newsletter.sources", reason="the dump parser is not there yet")
    abstracts = []
    for path in sorted(shared_dumps.iterdir()):
        parsed = sources.parse_dump(path.read_text(encoding="utf-8"), source_name=path.name,
                                    fallback_date=date(2026, 1, 1))
        abstracts.extend(tokenize(paper.abstract) for paper in parsed.papers)
    _assert_field_scores_like_bm25s(abstracts[:150])


# Acronyms, spellings and near-duplicates

MOE_DEFINED = paper(
    "Sparse expert routing", "We study Mixture-of-Experts (MoE) layers and route tokens to experts."
)


def test_acronym_definitions_are_read_as_authors_write_them() -> None:
    text = (
        "Large Language Models (LLMs) use Chain-of-Thought (CoT) prompting and Proximal Policy "
        "Optimization (PPO); results (i) and (ii) hold for the model (see the appendix)."
    )
    assert find_definitions(text) == [
        ("LLMs", "Large Language Models"),
        ("CoT", "Chain of Thought"),
        ("PPO", "Proximal Policy Optimization"),
    ]
    assert find_definitions("results on out-of-context reasoning (OCR) tasks") == [
        ("OCR", "out of context reasoning")  # not "of context reasoning"
    ]


def test_an_acronym_and_its_expansion_find_each_other() -> None:
    papers = [
        MOE_DEFINED,
        paper("Mixture of experts at scale", "Expert parallelism for a mixture of experts."),
        paper("Serving MoE models", "We serve MoE models on one GPU."),
    ]
    for keyword in ("MoE", "mixture of experts", "Mixture-of-Experts"):
        ranked = run(papers, keyword)
        assert set(titles(ranked)) == {p.title for p in papers}
        assert all(item.matched[0].keyword == keyword for item in ranked)
    # Two spellings of one keyword in a profile count once.
    assert [r.score for r in run(papers, "MoE", "mixture of experts")] == [
        r.score for r in run(papers, "MoE")
    ]


def test_an_acronym_inside_a_longer_keyword_is_written_out_too() -> None:
    papers = [
        paper("Reasoning traces", "Chain-of-Thought (CoT) prompting makes models explain."),
        paper("Shorter thoughts", "We study chain-of-thought compression for cheaper reasoning."),
    ]
    assert picked_titles(run(papers, "CoT compression")) == ["Shorter thoughts"]


def test_no_expansion_without_a_definition_and_none_in_another_sense() -> None:
    papers = [
        paper("Serving MoE models", "We serve MoE models on one GPU."),
        paper("Mixture of experts at scale", "Expert parallelism for a mixture of experts."),
    ]
    assert titles(run(papers, "MoE")) == ["Serving MoE models"]  # nobody defines it here
    papers = [
        paper("Faster decoding", "Speculative decoding (SD) drafts tokens; SD is fast."),
        paper("Polynomials", "Symmetric decomposable (SD) forms; SD forms are studied here."),
    ]
    assert titles(run(papers, "speculative decoding")) == ["Faster decoding"]


def test_a_hyphenated_keyword_matches_the_closed_compound() -> None:
    papers = [paper("Multiagent debate", "Multiagent systems argue."), paper("Single agents")]
    assert picked_titles(run(papers, "multi-agent")) == ["Multiagent debate"]


def test_a_closed_keyword_matches_the_hyphenated_compound_only_where_papers_hyphenate() -> None:
    papers = [
        paper("Pre-training at scale", "We study pre-training of large models."),
        paper("Fine-tuning recipes", "Parameter-efficient fine-tuning."),
        paper("Notable failures", "Models are not able to count."),
    ]
    assert picked_titles(run(papers, "pretraining")) == ["Pre-training at scale"]
    assert picked_titles(run(papers, "finetuning")) == ["Fine-tuning recipes"]
    # "not able" is never written with a hyphen: "notable" stays one word.
    assert titles(run(papers, "notable")) == ["Notable failures"]


def test_near_duplicate_papers_never_both_appear() -> None:
    abstract = (
        "We present a retrieval augmented prover for Lean that selects premises from a large "
        "library with a dense retriever, trained on data extracted from the mathlib library, "
        "and we release code, data and models."
    )
    papers = [
        paper("LeanDojo: theorem proving with retrieval", abstract, upvotes=10),
        paper("Retrieval-augmented theorem proving in Lean", abstract + " Version 2.", upvotes=3),
        paper("Another prover for Lean", "A different abstract about Lean proofs and tactics."),
    ]
    ranked = run(papers, "Lean")
    assert len(ranked) == 2
    assert "Another prover for Lean" in titles(ranked)
    # Excluding the better copy leaves the other one.
    assert len(run(papers, "Lean", exclude=("LeanDojo",))) == 2
    assert duplicate_groups([["a", "b"], ["a", "b"]]) == [0, 1]  # too short to tell


def _duplicate_groups_by_definition(abstracts: list[list[str]]) -> list[int]:
    """The rule of `newsletter.duplicates` written plainly: shingle sets, shared counts, a
    group per connected set of close pairs, named by its smallest position."""
    from itertools import combinations

    from newsletter.duplicates import COMMON_SHINGLE_PAPERS, CONTAINMENT, MIN_SHINGLES, SHINGLE

    sets = [{tuple(t[at : at + SHINGLE]) for at in range(len(t) - SHINGLE + 1)} for t in abstracts]
    group = list(range(len(abstracts)))
    for first, second in combinations(range(len(abstracts)), 2):
        if min(len(sets[first]), len(sets[second])) < MIN_SHINGLES:
            continue
        shared = [
            s for s in sets[first] & sets[second]
            if sum(s in other for other in sets if len(other) >= MIN_SHINGLES) < COMMON_SHINGLE_PAPERS
        ]
        if len(shared) >= CONTAINMENT * min(len(sets[first]), len(sets[second])):
            low, high = sorted((group[first], group[second]))
            group = [low if g == high else g for g in group]
    return group


@given(st.lists(st.lists(st.sampled_from("a b c d e f".split()), max_size=40), max_size=12), st.randoms())
def test_duplicate_groups_follow_their_definition(abstracts: list[list[str]], rng: object) -> None:
    # Copies, truncated copies and shuffled copies make duplicates and near misses.
    made = [list(tokens) for tokens in abstracts]
    for tokens in abstracts[:4]:
        made.append(tokens[: rng.randint(0, len(tokens))])  # type: ignore[attr-defined]
        made.append(tokens + rng.sample(tokens, len(tokens) // 3))  # type: ignore[attr-defined]
    assert duplicate_groups(made) == _duplicate_groups_by_definition(made)


# Exact phrases (issue 15): a keyword of three or more words is in phrase only where its words
# are one run, in order.
SLEEP_TIME = paper(
    "Sleep-time Compute: Beyond Inference Scaling at Test-time",
    "Models think while idle; we study scaling test-time inference.",
)
HOLDS_PHRASE = paper(
    "Scaling test-time compute with verifiers",
    "We spend more test-time compute on hard problems.",
)


def test_three_words_scattered_in_pairs_are_not_the_phrase() -> None:
    ranked = rank_papers([*BACKGROUND, SLEEP_TIME, HOLDS_PHRASE], Profile(("test-time compute",)), max_papers=5)
    titles = [item.paper.title for item in ranked]
    assert titles.index(HOLDS_PHRASE.title) < titles.index(SLEEP_TIME.title)
    sleep = next(item for item in ranked if item.paper == SLEEP_TIME)
    # "test time" and "time compute" are both in its title, but never "test time compute".
    assert sleep.score < next(item.score for item in ranked if item.paper == HOLDS_PHRASE) / 2


def test_a_field_is_named_for_a_phrase_only_where_the_phrase_is() -> None:
    abstract_phrase = paper(
        "Sleep-time Compute: Beyond Inference Scaling at Test-time",
        "Scaling test-time compute is costly; we precompute while idle.",
    )
    ranked = rank_papers([*BACKGROUND, abstract_phrase], Profile(("test-time compute",)), max_papers=5)
    assert ranked[0].matched == (KeywordMatch("test-time compute", ("abstract",)),)


def test_an_exact_phrase_of_three_words_in_any_spelling_matches() -> None:
    papers = [*BACKGROUND, paper("Test time compute, spelled apart", "Test time compute at scale.")]
    ranked = rank_papers(papers, Profile(("test-time compute",)), max_papers=5)
    assert ranked[0].matched == (KeywordMatch("test-time compute", ("title", "abstract")),)
    assert ranked[0].picked


# Followed authors and trending (issue 15) -------------------------------------------------
def by(title: str, *authors: str, upvotes: int | None = None, abstract: str = FILLER) -> Paper:
    return Paper(title=title, abstract=abstract, authors=authors, upvotes=upvotes)


def test_a_followed_author_s_paper_is_picked_first_and_says_why() -> None:
    papers = [
        *BACKGROUND,
        by("Lean proofs at scale", "Ada Lovelace", abstract="Theorem proving in Lean."),
        by("Energy-based models revisited", "Yann LeCun", "Someone Else"),
        Paper("Counted authors only", FILLER, author_count=3),
    ]
    ranked = rank_papers(papers, Profile(("Lean",), authors=("yann  lecun",)), max_papers=5)
    picks = [item for item in ranked if item.picked]
    assert [item.paper.title for item in picks] == ["Energy-based models revisited", "Lean proofs at scale"]
    assert picks[0].matched == (KeywordMatch("yann  lecun", ("author",)),)
    assert picks[1].matched == (KeywordMatch("Lean", ("title", "abstract")),)


def test_authors_alone_make_a_profile_and_excludes_still_win() -> None:
    papers = [*BACKGROUND, by("A survey of world models", "Yann LeCun"), by("JEPA", "Yann LeCun")]
    ranked = rank_papers(papers, Profile((), exclude=("survey",), authors=("Yann LeCun",)), max_papers=5)
    assert [item.paper.title for item in ranked if item.picked] == ["JEPA"]
    # Dumps that give only a count of authors match no author, and nothing breaks.
    counted = [Paper("Counted", FILLER, author_count=4)]
    assert rank_papers(counted, Profile((), authors=("Yann LeCun",)), max_papers=5) == []


def test_rank_many_mixes_profiles_with_and_without_authors() -> None:
    papers = [*BACKGROUND, by("Energy-based models", "Yann LeCun")]
    index = PaperIndex.build(papers)
    profiles = [Profile(("attention",)), Profile((), authors=("Yann LeCun",)), Profile(("tables",), authors=("Nobody",))]
    many = rank_many(index, profiles, max_papers=3, picks_only=True)
    assert many == [[r for r in rank(index, profile, max_papers=3) if r.picked] for profile in profiles]
    assert [r.paper.title for r in many[1]] == ["Energy-based models"]


def test_trending_is_by_upvotes_never_repeats_a_pick_and_honours_exclude() -> None:
    papers = [
        paper("Quiet paper", upvotes=1), paper("Hot survey of agents", upvotes=90),
        paper("Hot Lean paper", "Theorem proving in Lean.", upvotes=80), paper("Warm paper", upvotes=40),
        paper("Warm twin", upvotes=40),
    ]
    index = PaperIndex.build(papers)
    profile = Profile(("Lean",), exclude=("survey",))
    picks = {item.paper.paper_id for item in rank(index, profile, max_papers=5) if item.picked}
    shown = trending(index, profile, 3, skip=picks)
    assert shown.by_upvotes
    assert [p.title for p in shown.papers] == ["Warm paper", "Warm twin", "Quiet paper"]


def test_trending_without_upvotes_follows_the_listing_and_says_so() -> None:
    papers = [paper("Zeta first in the listing"), paper("Alpha second"), paper("Mid third")]
    shown = trending(PaperIndex.build(papers), Profile(()), 2)
    assert not shown.by_upvotes
    assert [p.title for p in shown.papers] == ["Zeta first in the listing", "Alpha second"]
    assert trending(PaperIndex.build(papers), Profile(()), 0).papers == ()


def test_a_keyword_written_as_a_sentence_is_eligible_on_most_of_its_words() -> None:
    keyword = "giving language models memory beyond the context window"
    papers = [
        *BACKGROUND,
        paper("MemoryOS", "Language models get a memory store beyond their context window."),
        paper("Context windows", "We measure the context window of vision models."),
    ]
    ranked = rank_papers(papers, Profile((keyword,)), max_papers=5)
    picked = [item for item in ranked if item.picked]
    assert [item.paper.title for item in picked] == ["MemoryOS"]
    assert picked[0].matched == (KeywordMatch(keyword, ("most words",)),)
    # A short keyword still needs all its words: half of them is not enough.
    short = rank_papers(papers, Profile(("memory consolidation",)), max_papers=5)
    assert [item.paper.title for item in short if item.picked] == []
