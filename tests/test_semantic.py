"""Hybrid ranking: fusion rules (with hand-made vectors), stored embeddings, the real model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from newsletter import pipeline
from newsletter.models import KeywordMatch, Paper
from newsletter.ranking import PaperIndex, Profile, Semantic, rank, rank_papers
from newsletter import semantic as semantic_module
from newsletter.errors import ConfigError
from newsletter.semantic import (
    DEFAULT_MODEL,
    embed_keywords,
    embed_new_papers,
    encoder_for,
    installed,
    paper_text,
    resolve_model,
    stored_semantic,
)
from newsletter.store import Store

AXES = {"experts": 0, "proofs": 1, "audio": 2, "other": 3}


def unit(*weights: float) -> np.ndarray:
    vector = np.array(weights, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def fake_encode(texts: Sequence[str]) -> np.ndarray:
    """Keywords about experts point along axis 0, about proofs along axis 1, else axis 3."""
    rows = []
    for text in texts:
        axis = next((a for word, a in AXES.items() if word in text.lower()), AXES["other"])
        rows.append(np.eye(4, dtype=np.float32)[axis])
    return np.stack(rows)


PAPERS = [
    Paper("Mixture of experts routing", "Routing tokens to experts.", upvotes=1),
    Paper("Sparse conditional computation", "Tokens pick sub-networks; only some run.", upvotes=1),
    Paper("Neural audio codecs", "We compress sound.", upvotes=900),
    Paper("Speech tokenizers", "Discrete units of speech.", upvotes=2),
    Paper("Image captioning", "Words for pictures.", upvotes=3),
]
VECTORS = {
    PAPERS[0].paper_id: unit(1, 0, 0, 0.3),
    PAPERS[1].paper_id: unit(1, 0, 0, 0.2),  # says it in other words, as closely
    PAPERS[2].paper_id: unit(0, 0, 1, 0),
    PAPERS[3].paper_id: unit(0, 0.1, 1, 0),
    PAPERS[4].paper_id: unit(0, 0, 0.2, 1),
}
SEMANTIC = Semantic(VECTORS, fake_encode)


def test_a_paper_saying_it_in_other_words_is_picked_and_says_why() -> None:
    ranked = rank_papers(PAPERS, Profile(("mixture of experts",)), max_papers=5, semantic=SEMANTIC)
    picked = [item for item in ranked if item.picked]
    assert [item.paper.title for item in picked] == [
        "Mixture of experts routing",
        "Sparse conditional computation",
    ]
    assert picked[0].matched == (KeywordMatch("mixture of experts", ("title",)),)
    assert picked[1].matched == (KeywordMatch("mixture of experts", ("similar meaning",)),)
    assert "Neural audio codecs" not in [item.paper.title for item in ranked]  # upvotes lift nothing


def test_hybrid_keeps_no_filler_and_honours_exclude() -> None:
    assert rank_papers(PAPERS, Profile(("theorem proofs",)), max_papers=5, semantic=SEMANTIC) == []
    ranked = rank_papers(
        PAPERS, Profile(("mixture of experts",), exclude=("sub-networks",)), max_papers=5,
        semantic=SEMANTIC,
    )
    assert [item.paper.title for item in ranked if item.picked] == ["Mixture of experts routing"]
    assert "Sparse conditional computation" not in [item.paper.title for item in ranked]


def test_hybrid_never_drops_what_the_lexical_floor_picks() -> None:
    papers = PAPERS[:2]
    lexical = rank_papers(papers, Profile(("experts",)), max_papers=5)
    hybrid = rank_papers(papers, Profile(("experts",)), max_papers=5, semantic=SEMANTIC)
    assert {i.paper.title for i in lexical if i.picked} <= {i.paper.title for i in hybrid if i.picked}


def test_a_keyword_is_embedded_as_written_and_by_the_acronym_the_papers_use() -> None:
    papers = [
        Paper("Routing", "A Mixture-of-Experts (MoE) layer; reinforcement learning (RL) tunes it."),
        Paper("Proofs", "Chain-of-Thought (CoT) prompting for theorem proofs."),
    ]
    index = PaperIndex.build(papers, Semantic({}, fake_encode))
    assert index.embedded_texts("mixture of experts") == ("mixture of experts", "MoE")
    assert index.embedded_texts("sparse mixture-of-experts routing") == (
        "sparse mixture-of-experts routing", "sparse MoE routing",
    )
    # Two-letter acronyms are too ambiguous to embed; acronyms are not written out.
    assert index.embedded_texts("reinforcement learning") == ("reinforcement learning",)
    assert index.embedded_texts("CoT compression") == ("CoT compression",)
    assert index.embedded_texts("audio codecs") == ("audio codecs",)


def test_a_keyword_s_similarity_is_the_mean_over_its_texts() -> None:
    papers = [Paper("Mixture-of-Experts (MoE) for proofs", "Routing."), Paper("Audio", "Sound.")]
    vectors = {papers[0].paper_id: unit(0.6, 0.8, 0, 0), papers[1].paper_id: unit(0, 0, 1, 0)}

    def encode(texts: Sequence[str]) -> np.ndarray:  # "MoE" points at proofs, the phrase at experts
        return np.stack([np.eye(4, dtype=np.float32)[1 if text == "MoE" else 0] for text in texts])

    index = PaperIndex.build(papers, Semantic(vectors, encode))
    expected = {"Audio": 0.0, papers[0].title: (0.6 + 0.8) / 2}
    np.testing.assert_allclose(
        index.cosines(["mixture of experts"])[0], [expected[p.title] for p in index.papers], rtol=1e-6
    )


def test_embeddings_are_stored_once_per_paper_and_model(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.add_dump(path="d", sha256="x" * 64, format="t", listing_date=None, dump_papers_=PAPERS)
    ids = [paper.paper_id for paper in PAPERS]
    store.save_paper_embeddings("m", {ids[0]: VECTORS[ids[0]]})
    store.save_paper_embeddings("m", {ids[0]: np.zeros(4, dtype=np.float32)})  # kept, not replaced
    found = store.paper_embeddings("m", ids)
    assert list(found) == [ids[0]]
    np.testing.assert_array_equal(found[ids[0]], VECTORS[ids[0]])
    assert store.paper_embeddings("other model", ids) == {}


def test_semantic_is_off_when_asked() -> None:
    assert encoder_for("off") is None and encoder_for("") is None and encoder_for(None) is None


# The real model (the `semantic` extra with its packaged all-MiniLM-L6-v2)


@pytest.fixture(scope="module")
def real_encoder():  # type: ignore[no-untyped-def]
    if not installed():
        pytest.skip("the semantic extra is not installed")
    try:
        resolve_model(DEFAULT_MODEL)
    except ConfigError:
        pytest.skip("the packaged default model is not installed")
    encoder = encoder_for(DEFAULT_MODEL)
    assert encoder is not None
    return encoder


def test_the_default_model_resolves_to_the_packaged_copy(real_encoder) -> None:  # type: ignore[no-untyped-def]
    assert Path(resolve_model(DEFAULT_MODEL)).is_dir()
    vectors = real_encoder.encode(
        ["mixture of experts", "sparse expert routing in transformers", "baking sourdough bread"]
    )
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_paper_embeddings_are_encoded_once_then_read_from_the_store(real_encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.add_dump(path="d", sha256="y" * 64, format="t", listing_date=None, dump_papers_=PAPERS)
    semantic = pipeline.semantic_for(store, real_encoder, PAPERS)
    assert semantic is not None
    stored = store.paper_embeddings(real_encoder.model, [p.paper_id for p in PAPERS])
    assert set(stored) == {p.paper_id for p in PAPERS}
    np.testing.assert_allclose(
        stored[PAPERS[0].paper_id], real_encoder.encode([paper_text(PAPERS[0])])[0], rtol=1e-5
    )
    ranked = rank_papers(PAPERS, Profile(("mixture of experts",)), max_papers=3, semantic=semantic)
    assert ranked[0].paper.title == "Mixture of experts routing"


def test_papers_embedded_at_ingest_and_keywords_stored_make_a_send_need_no_model(
    real_encoder, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.add_dump(path="d", sha256="z" * 64, format="t", listing_date=None, dump_papers_=PAPERS)
    assert embed_new_papers(store, real_encoder) == len(PAPERS)
    assert embed_new_papers(store, real_encoder) == 0  # nothing new: nothing encoded
    assert store.papers_without_embedding(real_encoder.model) == []
    assert embed_keywords(store, real_encoder, ["mixture of experts"], PAPERS) == 1
    # The send side: vectors from the store only, no encoder at all.
    stored = stored_semantic(store, real_encoder.model, PAPERS)
    assert stored is not None
    in_memory = Semantic(
        {p.paper_id: v for p, v in zip(PAPERS, real_encoder.encode([paper_text(p) for p in PAPERS]))},
        real_encoder.encode,
    )
    profile = Profile(("mixture of experts",))
    assert rank_papers(PAPERS, profile, max_papers=3, semantic=stored) == rank_papers(
        PAPERS, profile, max_papers=3, semantic=in_memory
    )
    # Votes on papers of earlier days find their vectors through `voted`.
    old = Paper("An old paper on expert routing", "Voted on last week.")
    store.add_dump(path="old", sha256="o" * 64, format="t", listing_date=None, dump_papers_=[old])
    assert embed_new_papers(store, real_encoder) == 1
    assert old.paper_id not in stored.paper_vectors
    with_votes = stored_semantic(store, real_encoder.model, PAPERS, voted=[old.paper_id, "arxiv:unknown"])
    assert with_votes is not None and old.paper_id in with_votes.paper_vectors
    # A keyword nobody embedded yet counts as unknown, not as a crash; the lexical part holds.
    unknown = rank_papers(PAPERS, Profile(("neural audio",)), max_papers=3, semantic=stored)
    assert [item.paper.title for item in unknown if item.picked] == ["Neural audio codecs"]


# Vectors of sentence-transformers 5.x (torch) for all-MiniLM-L6-v2, first 6 dimensions: the
# onnxruntime path must give the same model, not merely a similar one.
REFERENCE = {
    "mixture of experts": [0.00706, -0.03653, 0.0351, 0.00934, 0.02819, 0.00564],
    "Sleep-time Compute: Beyond Inference Scaling at Test-time": [
        -0.044, -0.00265, -0.00825, 0.08112, 0.0664, -0.01683,
    ],
}


def test_the_model_runs_without_torch_and_matches_sentence_transformers(real_encoder) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from newsletter.semantic import encoder_for, DEFAULT_MODEL\n"
        "encoder_for(DEFAULT_MODEL).encode(['theorem proving'])\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
    for text, expected in REFERENCE.items():
        np.testing.assert_allclose(real_encoder.encode([text])[0][: len(expected)], expected, atol=5e-5)


def test_a_model_whose_weights_are_not_the_named_model_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not installed():
        pytest.skip("the semantic extra is not installed")
    try:
        folder = resolve_model(DEFAULT_MODEL)
    except ConfigError:
        pytest.skip("the packaged default model is not installed")
    fake = tmp_path / "model"
    fake.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (fake / name).write_bytes((folder / name).read_bytes())
    (fake / "model.safetensors").write_bytes(b"not the weights")
    monkeypatch.setattr(semantic_module, "resolve_model", lambda name: fake)
    with pytest.raises(ConfigError, match="is not all-MiniLM-L6-v2"):
        semantic_module.Encoder(DEFAULT_MODEL).encode(["x"])


def test_the_lexical_path_imports_no_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from newsletter import cli, runtime\n"
        "from newsletter.settings import Settings\n"
        "runtime.semantic_encoder(Settings())\n"
        "print('torch' in sys.modules or 'sentence_transformers' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# Votes (issue 15): "more like this" pulls similar papers up, "less like this" pushes them down.
VOTED = [
    Paper("Expert routing A", "Mixture of experts routing with load balance.", upvotes=1),
    Paper("Expert routing B", "Mixture of experts routing for speech.", upvotes=2),  # wins ties
    Paper("Liked yesterday", "Old paper.", upvotes=1),
    Paper("Disliked yesterday", "Old paper.", upvotes=1),
]
VOTE_VECTORS = {
    VOTED[0].paper_id: unit(1, 0, 0.1, 0),  # about load balance
    VOTED[1].paper_id: unit(1, 0, 0, 0.1),  # about speech
    VOTED[2].paper_id: unit(0, 0, 1, 0),  # liked: load balance
    VOTED[3].paper_id: unit(0, 0, 0, 1),  # disliked: speech
}


def order(profile: Profile) -> list[str]:
    index = PaperIndex.build(VOTED[:2], Semantic(VOTE_VECTORS, fake_encode))
    return [item.paper.title for item in rank(index, profile, max_papers=5)]


def test_votes_pull_similar_papers_up_and_push_others_down() -> None:
    keywords = ("mixture of experts",)
    liked, disliked = VOTED[2].paper_id, VOTED[3].paper_id
    assert order(Profile(keywords)) == ["Expert routing B", "Expert routing A"]
    assert order(Profile(keywords, liked=frozenset({VOTED[2].paper_id}))) == ["Expert routing A", "Expert routing B"]
    assert order(Profile(keywords, disliked=frozenset({disliked}))) == ["Expert routing A", "Expert routing B"]
    # The other way round: the speech paper rises when speech is liked and load balance not.
    flipped = Profile(keywords, liked=frozenset({disliked}), disliked=frozenset({liked}))
    assert order(flipped) == ["Expert routing B", "Expert routing A"]
    assert order(Profile(keywords, liked=frozenset({"unknown id"}))) == order(Profile(keywords))


def test_votes_never_override_an_exclude() -> None:
    profile = Profile(
        ("mixture of experts",), exclude=("speech",), liked=frozenset({VOTED[3].paper_id})
    )
    assert order(profile) == ["Expert routing A"]


def test_ingest_with_an_encoder_embeds_the_new_papers(real_encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from newsletter.ingest import ingest_dumps

    dumps = Path(__file__).resolve().parents[1] / "examples" / "dumps"
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    report = ingest_dumps(store, dumps, encoder=real_encoder)
    papers = store.all_papers()
    assert papers and report.embedded == len(papers)
    assert set(store.paper_embeddings(real_encoder.model, [p.paper_id for p in papers])) == {
        p.paper_id for p in papers
    }
    assert ingest_dumps(store, dumps, encoder=real_encoder).embedded == 0  # nothing new


SENDING_PROCESS = """
import json, sys
from newsletter.runtime import Runtime
from newsletter.semantic import encoder_for
from newsletter.settings import load_settings
runtime = Runtime(load_settings())
report = runtime.ingest()
subscribers = runtime.subscribers().subscribers
runtime.embed_keywords(subscribers)
model = encoder_for(runtime.settings.semantic_model)
papers = runtime.store.all_papers()
stored = runtime.store.paper_embeddings(model.model, [p.paper_id for p in papers])
words = runtime.store.keyword_embeddings(model.model, [k for s in subscribers for k in s.keywords])
print(json.dumps({"embedded": report.embedded, "papers": len(papers), "stored": len(stored),
                  "keywords": len(words), "loaded_here": model.loaded, "again": runtime.embed()}))
"""


def test_the_sending_process_never_loads_the_model(real_encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Papers (at ingest) and keywords (before a send) are embedded in a child process: the
    process that ingests and sends stores every vector without holding the model itself."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        NEWSLETTER_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
        NEWSLETTER_DUMPS_DIR=str(root / "examples" / "dumps"),
        NEWSLETTER_SUBSCRIBERS_FILE=str(root / "subscribers.example.yaml"),
        NEWSLETTER_SEMANTIC_MODEL=real_encoder.model,
    )
    done = subprocess.run([sys.executable, "-c", SENDING_PROCESS], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["embedded"] == figures["papers"] == figures["stored"] > 0
    assert figures["keywords"] > 0
    assert figures["loaded_here"] is False
    assert figures["again"] == [0, 0]  # nothing missing: no child process, nothing encoded
