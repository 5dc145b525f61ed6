"""Procedural abdominal CT phantoms with reports and M3D-style VQA (our design; no real CT is downloaded).

A phantom is an elliptic "abdomen" with four organs (liver, spleen, two kidneys) as jittered
ellipsoids and 0–3 lesions, at most one per organ. Each lesion has a type (cyst: dark,
tumour: hypo-dense and textured, calcification: bright), a size bucket and a position
(upper or lower half of its organ along the body axis). A volume also has a contrast phase
(organ intensities), a window (intensity clipping) and a plane (the slicing axis). Text:

* a report from a small grammar with paraphrases and random sentence order, which
  ``parse_findings`` reads back into (organ, type, size, position) tuples (finding-F1);
* VQA in M3D's question types (plane, phase, abnormality type, position, organ) plus count
  and size, each in a 4-option closed form and an open form;
* a caption per 2-D slice (plane, phase, visible organs and lesions) for "2D pretraining".

Prompt paraphrases are split: a few are held out of training so the text router is tested
on wording it never saw. Sizes are laptop-scale (16 slices of 32×32 by default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

ORGANS = ("liver", "spleen", "left kidney", "right kidney")
LESION_TYPES = ("cyst", "tumour", "calcification")
SIZES = ("small", "large")
POSITIONS = ("upper", "lower")
PHASES = ("non-contrast", "arterial", "portal venous", "delayed")
PLANES = ("axial", "coronal", "sagittal")
WINDOWS = ("soft tissue", "wide")
TASKS = ("report", "closed", "open")  # the task groups of TGH-MoE: report generation, closed and open VQA
COUNTS = ("zero", "one", "two", "three")

# centre (x, y, z) and radii in body coordinates [-1, 1]^3; x: image left -> right, z: feet -> head
_ORGAN_GEOMETRY = {
    "liver": ((-0.42, 0.0, 0.35), (0.36, 0.42, 0.38)),
    "spleen": ((0.5, 0.12, 0.4), (0.2, 0.26, 0.28)),
    "left kidney": ((0.42, 0.35, -0.38), (0.16, 0.16, 0.32)),
    "right kidney": ((-0.42, 0.35, -0.38), (0.16, 0.16, 0.32)),
}
# organ intensity by phase (the contrast regime a reader recognises): liver, spleen, kidneys
_PHASE_INTENSITY = {
    "non-contrast": (0.50, 0.48, 0.50),
    "arterial": (0.55, 0.78, 0.82),
    "portal venous": (0.74, 0.66, 0.70),
    "delayed": (0.60, 0.57, 0.95),
}
_LESION_RADIUS = {"small": 0.11, "large": 0.19}
_BODY_INTENSITY = 0.3

CAPTION_PROMPT = "describe this slice ."
REPORT_PROMPTS = ("write the report for this ct .", "describe the findings in this scan .",
                  "generate a radiology report .", "please report this examination .")
FIRST_SENTENCES = ("{plane} ct in the {phase} phase .", "this is a {plane} ct , {phase} phase .",
                   "{plane} {phase} phase images .")
FINDING_SENTENCES = ("there is a {size} {type} in the {position} {organ} .",
                     "a {size} {type} is seen in the {position} part of the {organ} .",
                     "{size} {type} in the {position} {organ} .")
NORMAL_SENTENCES = ("no focal lesion is seen .", "the organs appear normal .", "no abnormality .")
# question type -> (paraphrases, closed options); the last paraphrase of each is held out of training
QUESTIONS = {
    "plane": (("which plane is this ct in ?", "in what plane are the images ?", "what is the scan plane ?"),
              PLANES + ("oblique",)),
    "phase": (("which contrast phase is this ?", "what phase is the scan in ?", "in which phase was it acquired ?"),
              PHASES),
    "count": (("how many lesions are there ?", "what is the number of lesions ?", "count the lesions ."), COUNTS),
    "type": (("what kind of lesion is in the {organ} ?", "which abnormality does the {organ} show ?",
              "what lesion type is seen in the {organ} ?"), LESION_TYPES + ("none",)),
    "position": (("where in the {organ} is the {type} ?", "which part of the {organ} holds the {type} ?",
                  "is the {type} in the upper or lower {organ} ?"), POSITIONS + ("central", "diffuse")),
    "size": (("how large is the {type} in the {organ} ?", "what size is the {organ} {type} ?",
              "describe the size of the {type} in the {organ} ."), SIZES + ("medium", "tiny")),
    "organ": (("which organ contains the {type} ?", "where is the {type} located ?", "in which organ is the {type} ?"),
              ORGANS),
}
CLOSED_SUFFIX = " choices : a {0} b {1} c {2} d {3} ."


@dataclass(frozen=True)
class Lesion:
    organ: str
    type: str
    size: str
    position: str
    centre: tuple[float, float, float]

    def finding(self) -> tuple[str, str, str, str]:
        return (self.organ, self.type, self.size, self.position)


@dataclass
class Phantom:
    volume: np.ndarray  # (slices, H, W) float32 in [0, 1]
    plane: str
    phase: str
    window: str
    lesions: list[Lesion]
    organ_masks: dict[str, np.ndarray] = field(repr=False)  # bool (slices, H, W) in the volume's grid
    lesion_masks: list[np.ndarray] = field(repr=False)


@dataclass(frozen=True)
class PhantomConfig:
    slices: int = 16
    size: int = 32
    noise: float = 0.04
    max_lesions: int = 3


def _grid(cfg: PhantomConfig, plane: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Body coordinates (x, y, z) of every voxel, each (slices, H, W); the slice axis depends on the plane."""
    s = np.linspace(-1, 1, cfg.slices, dtype=np.float32)
    a = np.linspace(-1, 1, cfg.size, dtype=np.float32)
    if plane == "axial":        # slices along z (head first), rows y, columns x
        z, y, x = np.meshgrid(s[::-1], a, a, indexing="ij")
    elif plane == "coronal":    # slices along y, rows z (head up), columns x
        y, z, x = np.meshgrid(s, a[::-1], a, indexing="ij")
    else:                       # sagittal: slices along x, rows z, columns y
        x, z, y = np.meshgrid(s, a[::-1], a, indexing="ij")
    return x, y, z


def _inside(x, y, z, centre, radii) -> np.ndarray:
    return ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + \
        ((z - centre[2]) / radii[2]) ** 2 <= 1.0


def make_phantom(rng: np.random.Generator, cfg: PhantomConfig = PhantomConfig(),
                 plane: str | None = None, n_lesions: int | None = None) -> Phantom:
    plane = plane or PLANES[rng.integers(len(PLANES))]
    phase = PHASES[rng.integers(len(PHASES))]
    window = WINDOWS[rng.integers(len(WINDOWS))]
    x, y, z = _grid(cfg, plane)
    volume = np.where((x / 0.92) ** 2 + (y / 0.72) ** 2 <= 1.0, _BODY_INTENSITY, 0.0).astype(np.float32)
    geometry, masks = {}, {}
    liver, spleen, kidney = _PHASE_INTENSITY[phase]
    for organ, (centre, radii) in _ORGAN_GEOMETRY.items():
        centre = np.asarray(centre) + rng.uniform(-0.05, 0.05, 3)
        radii = np.asarray(radii) * rng.uniform(0.88, 1.12, 3)
        geometry[organ] = (centre, radii)
        masks[organ] = _inside(x, y, z, centre, radii)
        level = {"liver": liver, "spleen": spleen}.get(organ, kidney) + rng.normal(0, 0.02)
        volume[masks[organ]] = level
    n = int(rng.integers(cfg.max_lesions + 1)) if n_lesions is None else n_lesions
    lesions, lesion_masks = [], []
    for organ in rng.permutation(ORGANS)[:n]:
        centre, radii = geometry[organ]
        kind, size = LESION_TYPES[rng.integers(3)], SIZES[rng.integers(2)]
        position = POSITIONS[rng.integers(2)]
        radius = _LESION_RADIUS[size]
        # a point in the organ's upper (z > centre) or lower half, kept away from the organ's surface
        u = rng.normal(size=3)
        u = u / np.linalg.norm(u) * rng.uniform(0.0, 0.35)
        u[2] = (1 if position == "upper" else -1) * rng.uniform(0.3, 0.45)
        where = centre + u * np.maximum(radii - radius, 0.05)
        mask = _inside(x, y, z, where, (radius,) * 3) & masks[organ]
        base = volume[mask].mean() if mask.any() else 0.5
        if kind == "cyst":
            volume[mask] = 0.12
        elif kind == "tumour":
            volume[mask] = base - 0.22 + rng.normal(0, 0.06, int(mask.sum()))
        else:
            volume[mask] = 1.0
        lesions.append(Lesion(str(organ), kind, size, position, tuple(float(v) for v in where)))
        lesion_masks.append(mask)
    volume = volume + rng.normal(0, cfg.noise, volume.shape).astype(np.float32)
    if window == "soft tissue":
        volume = (volume - 0.2) / 0.7
    else:
        volume = volume * 0.8 + 0.1
    return Phantom(np.clip(volume, 0, 1).astype(np.float32), plane, phase, window, lesions, masks, lesion_masks)


# --------------------------------------------------------------------------- text

def report(p: Phantom, rng: np.random.Generator) -> str:
    """Report grammar: a plane/phase sentence, then finding sentences (or a normal one) in random order."""
    first = FIRST_SENTENCES[rng.integers(len(FIRST_SENTENCES))].format(plane=p.plane, phase=p.phase)
    findings = [FINDING_SENTENCES[rng.integers(len(FINDING_SENTENCES))].format(
        size=les.size, type=les.type, position=les.position, organ=les.organ) for les in p.lesions]
    rng.shuffle(findings)
    if not findings:
        findings = [NORMAL_SENTENCES[rng.integers(len(NORMAL_SENTENCES))]]
    return " ".join([first, *findings])


def parse_findings(text: str) -> set[tuple[str, str, str, str]]:
    """(organ, type, size, position) of every sentence that names all four; the grammar read backwards."""
    found = set()
    for sentence in text.split("."):
        words = sentence.split()
        joined = " ".join(words)
        organ = next((o for o in ORGANS if re.search(rf"\b{o}\b", joined)), None)
        kind = next((t for t in LESION_TYPES if t in words), None)
        size = next((s for s in SIZES if s in words), None)
        position = next((q for q in POSITIONS if q in words), None)
        if organ and kind and size and position:
            found.add((organ, kind, size, position))
    return found


@dataclass(frozen=True)
class QA:
    qtype: str
    question: str
    answer: str
    options: tuple[str, ...]  # 4 options, shuffled, the answer among them
    held_out: bool = False    # asked with the paraphrase kept out of training


def questions(p: Phantom, rng: np.random.Generator, held_out: bool = False) -> list[QA]:
    """M3D-style QA for one phantom. ``held_out`` draws the held-out paraphrase half the time."""

    def ask(qtype: str, answer: str, **slots) -> QA:
        phrasings, pool = QUESTIONS[qtype]
        unseen = held_out and rng.random() < 0.5
        k = len(phrasings) - 1 if unseen else int(rng.integers(len(phrasings) - 1))
        options = tuple(rng.permutation(pool).tolist())
        return QA(qtype, phrasings[k].format(**slots), answer, options, unseen)

    qa = [ask("plane", p.plane), ask("phase", p.phase), ask("count", COUNTS[len(p.lesions)])]
    by_organ = {les.organ: les for les in p.lesions}
    organ = ORGANS[rng.integers(len(ORGANS))]
    qa.append(ask("type", by_organ[organ].type if organ in by_organ else "none", organ=organ))
    types = [les.type for les in p.lesions]
    for les in p.lesions:
        qa.append(ask("position", les.position, organ=les.organ, type=les.type))
        qa.append(ask("size", les.size, organ=les.organ, type=les.type))
        if types.count(les.type) == 1:
            qa.append(ask("organ", les.organ, type=les.type))
    return qa


def closed_prompt(qa: QA) -> str:
    return qa.question + CLOSED_SUFFIX.format(*qa.options)


def report_prompt(rng: np.random.Generator, held_out: bool = False) -> str:
    if held_out and rng.random() < 0.5:
        return REPORT_PROMPTS[-1]
    return REPORT_PROMPTS[rng.integers(len(REPORT_PROMPTS) - 1)]


def slice_caption(p: Phantom, index: int) -> str:
    """What one slice shows: plane, phase, the organs cut by it, and the lesions visible in it."""
    organs = [o for o in ORGANS if p.organ_masks[o][index].any()]
    seen = [f"{les.size} {les.type} in the {les.organ}" for les, m in zip(p.lesions, p.lesion_masks, strict=True)
            if m[index].any()]
    parts = [f"{p.plane} slice in the {p.phase} phase .", (" ".join(organs) if organs else "no organs") + " ."]
    parts += [s + " ." for s in seen]
    return " ".join(parts)


def all_text() -> list[str]:
    """Every word the grammar can produce (the fixed vocabulary), held-out paraphrases included."""
    words = list(ORGANS) + list(LESION_TYPES) + list(SIZES) + list(POSITIONS) + list(PHASES) + list(PLANES)
    words += list(COUNTS) + ["oblique", "none", "central", "diffuse", "medium", "tiny", "no organs", "slice"]
    texts = [CAPTION_PROMPT, *REPORT_PROMPTS, *FIRST_SENTENCES, *FINDING_SENTENCES, *NORMAL_SENTENCES]
    texts += [q for phrasings, _ in QUESTIONS.values() for q in phrasings] + [CLOSED_SUFFIX]
    return texts + words


class Vocabulary:
    """Word-level vocabulary over the grammar; ``{slot}`` placeholders and unknown words are errors."""

    SPECIALS = ("<pad>", "<bos>", "<sep>", "<eos>")

    def __init__(self, texts: list[str]):
        words = sorted({w for t in texts for w in re.sub(r"\{[^}]*\}", " ", t).split()})
        self.itos = list(self.SPECIALS) + words
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.pad, self.bos, self.sep, self.eos = range(4)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[w] for w in text.lower().replace("?", " ?").replace(".", " .").split()]
        except KeyError as err:
            raise ValueError(f"word {err.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> str:
        out = []
        for i in ids:
            if int(i) == self.eos:
                break
            if int(i) >= len(self.SPECIALS):
                out.append(self.itos[int(i)])
        return " ".join(out)


# --------------------------------------------------------------------------- datasets

@dataclass
class Examples:
    """Text examples over a set of volumes: volume index, task (index into TASKS), prompt, answer, options."""

    volume: list[int] = field(default_factory=list)
    task: list[int] = field(default_factory=list)
    prompt: list[str] = field(default_factory=list)
    answer: list[str] = field(default_factory=list)
    qtype: list[str] = field(default_factory=list)
    options: list[tuple[str, ...]] = field(default_factory=list)
    held_out: list[bool] = field(default_factory=list)

    def add(self, volume: int, task: str, prompt: str, answer: str, qtype: str = "report",
            options: tuple[str, ...] = (), held_out: bool = False) -> None:
        self.volume.append(volume)
        self.task.append(TASKS.index(task))
        self.prompt.append(prompt)
        self.answer.append(answer)
        self.qtype.append(qtype)
        self.options.append(options)
        self.held_out.append(held_out)

    def __len__(self) -> int:
        return len(self.volume)

    def select(self, task: str) -> list[int]:
        return [i for i, t in enumerate(self.task) if t == TASKS.index(task)]


@dataclass
class Dataset3D:
    volumes: np.ndarray  # (N, slices, H, W) float32
    phantoms: list[Phantom]
    reports: list[str]
    examples: Examples


def make_dataset(n: int, rng: np.random.Generator, cfg: PhantomConfig = PhantomConfig(),
                 test: bool = False) -> Dataset3D:
    """n phantoms, one report each, every question in both closed and open form, and report prompts.

    Test sets draw held-out prompt paraphrases half the time.
    """
    phantoms = [make_phantom(rng, cfg) for _ in range(n)]
    examples, reports = Examples(), []
    for i, p in enumerate(phantoms):
        reports.append(report(p, rng))
        prompt = report_prompt(rng, held_out=test)
        examples.add(i, "report", prompt, reports[-1], held_out=prompt == REPORT_PROMPTS[-1])
        for qa in questions(p, rng, held_out=test):
            examples.add(i, "closed", closed_prompt(qa), qa.answer, qa.qtype, qa.options, qa.held_out)
            examples.add(i, "open", qa.question, qa.answer, qa.qtype, (), qa.held_out)
    volumes = np.stack([p.volume for p in phantoms]) if phantoms else np.zeros((0, cfg.slices, cfg.size, cfg.size))
    return Dataset3D(volumes.astype(np.float32), phantoms, reports, examples)


def make_slices(n_volumes: int, rng: np.random.Generator, cfg: PhantomConfig = PhantomConfig(),
                per_volume: int = 8) -> tuple[np.ndarray, list[str]]:
    """The plentiful 2-D set: ``per_volume`` random slices of each of ``n_volumes`` fresh phantoms, captioned."""
    images, captions = [], []
    for _ in range(n_volumes):
        p = make_phantom(rng, cfg)
        for index in rng.choice(cfg.slices, size=min(per_volume, cfg.slices), replace=False):
            images.append(p.volume[index])
            captions.append(slice_caption(p, int(index)))
    return np.stack(images).astype(np.float32), captions
