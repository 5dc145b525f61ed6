import numpy as np
import pytest

from nanorepro.med3d.data import (
    COUNTS,
    ORGANS,
    QUESTIONS,
    REPORT_PROMPTS,
    TASKS,
    PhantomConfig,
    Vocabulary,
    _grid,
    _inside,
    all_text,
    make_dataset,
    make_phantom,
    parse_findings,
    questions,
    report,
    slice_caption,
)


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_lesions_sit_inside_their_organ_in_the_named_half(plane):
    rng = np.random.default_rng(0)
    cfg = PhantomConfig()
    for _ in range(20):
        p = make_phantom(rng, cfg, plane=plane, n_lesions=3)
        assert p.volume.shape == (16, 32, 32) and p.volume.min() >= 0 and p.volume.max() <= 1
        assert len({les.organ for les in p.lesions}) == 3  # at most one lesion per organ
        x, y, z = _grid(cfg, plane)
        for les, mask in zip(p.lesions, p.lesion_masks, strict=True):
            assert mask.any(), "every lesion is visible"
            assert not (mask & ~p.organ_masks[les.organ]).any()
            organ_z = z[p.organ_masks[les.organ]].mean()
            lesion_z = z[mask].mean()
            assert (lesion_z > organ_z) == (les.position == "upper")


def test_planes_slice_along_different_axes():
    x, y, z = _grid(PhantomConfig(), "axial")
    assert np.ptp(z[0]) == 0 and np.ptp(x[0]) > 0           # one axial slice: constant z
    x, y, z = _grid(PhantomConfig(), "sagittal")
    assert np.ptp(x[0]) == 0 and np.ptp(z[0]) > 0
    assert _inside(np.zeros(1), np.zeros(1), np.zeros(1), (0, 0, 0), (1, 1, 1)).all()


def test_report_grammar_parses_back_to_the_findings():
    rng = np.random.default_rng(1)
    for _ in range(200):
        p = make_phantom(rng)
        text = report(p, rng)
        assert parse_findings(text) == {les.finding() for les in p.lesions}


def test_parse_findings_by_hand():
    text = "axial ct in the arterial phase . large tumour in the lower left kidney . no abnormality ."
    assert parse_findings(text) == {("left kidney", "tumour", "large", "lower")}
    assert parse_findings("a small cyst in the liver .") == set()  # position missing: not a finding


def test_questions_have_four_options_including_the_answer():
    rng = np.random.default_rng(2)
    p = make_phantom(rng, n_lesions=2)
    qa = questions(p, rng)
    assert {q.qtype for q in qa} >= {"plane", "phase", "count", "type", "position", "size"}
    for q in qa:
        assert len(q.options) == 4 and q.answer in q.options
    assert next(q for q in qa if q.qtype == "count").answer == COUNTS[2]


def test_held_out_wording_only_in_test_sets():
    rng = np.random.default_rng(3)
    train, test = make_dataset(60, rng), make_dataset(60, rng, test=True)
    held_out = {REPORT_PROMPTS[-1]} | {phrasings[-1].split("{")[0] for phrasings, _ in QUESTIONS.values()}
    assert not any(train.examples.held_out)
    assert all(not any(p.startswith(h) for h in held_out if len(h) > 12) or t != 0
               for p, t in zip(train.examples.prompt, train.examples.task, strict=True))
    assert REPORT_PROMPTS[-1] not in train.examples.prompt
    assert any(test.examples.held_out)
    assert sorted(set(train.examples.task)) == list(range(len(TASKS)))


def test_vocabulary_round_trip_and_unknown_words():
    vocab = Vocabulary(all_text())
    rng = np.random.default_rng(4)
    p = make_phantom(rng, n_lesions=3)
    for text in [report(p, rng), slice_caption(p, 8)]:
        assert vocab.decode(vocab.encode(text) + [vocab.eos, 9]) == text
    with pytest.raises(ValueError, match="pancreas"):
        vocab.encode("is the pancreas normal ?")
    assert set(ORGANS[0].split()) <= set(vocab.itos)
