"""Recommendation data: a synthetic e-commerce world with seven instruction tasks, and RecBole atomic files.

The synthetic world is **our design** (``docs/sigma.md``), built so that each part of SIGMA
has something to find:

* item text (titles from phrase banks with synonyms and noise words) explains category,
  brand, colour, material, price, season and holiday, so grounded semantic IDs help;
* hidden co-purchase **bundles** (items bought together across categories) that text
  cannot explain, so distilling collaborative embeddings into the text space helps;
* users with preferences over 2–4 leaf categories, favourite brands and a price tier,
  sparse complement transitions between categories and a 52-week calendar with
  season and holiday boosts;
* about a third of the interactions follow an **instruction** (one of the seven tasks),
  so the task and its words change which item is right.

Every user's last interaction is the test target and the one before it the validation
target; both follow an instruction, with the task drawn uniformly. Training examples come
only from the earlier interactions, so a held-out target never appears in a training
history (tested).
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nanorepro.common.errors import UserError
from nanorepro.common.seeding import rng_stream

TASKS = ("JustForYou", "Query", "Category", "Longtail", "Discover", "Season", "Holiday")

LEAVES = (  # 8 top categories x 5 leaves; each leaf has two names (synonyms in titles and queries)
    ("shirt", "tee"), ("jacket", "coat"), ("dress", "gown"), ("jeans", "denim"), ("sweater", "jumper"),
    ("sneakers", "trainers"), ("boots", "booties"), ("sandals", "flipflops"), ("heels", "pumps"),
    ("slippers", "mules"),
    ("phone", "smartphone"), ("headphones", "earbuds"), ("charger", "adapter"), ("speaker", "soundbar"),
    ("camera", "webcam"),
    ("lamp", "light"), ("pillow", "cushion"), ("blanket", "throw"), ("mug", "cup"), ("vase", "planter"),
    ("lipstick", "gloss"), ("perfume", "fragrance"), ("shampoo", "cleanser"), ("lotion", "cream"),
    ("mascara", "eyeliner"),
    ("yogamat", "exercisemat"), ("dumbbell", "kettlebell"), ("racket", "paddle"), ("helmet", "headgear"),
    ("swimsuit", "bikini"),
    ("puzzle", "jigsaw"), ("doll", "figure"), ("robotkit", "buildingset"), ("plush", "teddy"),
    ("kite", "glider"),
    ("hose", "sprinkler"), ("pot", "container"), ("seeds", "bulbs"), ("shovel", "spade"), ("gloves", "mitts"),
)
N_LEAVES_PER_TOP = 5
COLOURS = ("red", "blue", "black", "white", "green", "pink", "grey", "yellow")
MATERIALS = ("cotton", "leather", "plastic", "metal", "wooden", "silk")
PRICE_WORDS = ("budget", "classic", "premium", "luxury")
SEASONS = ("spring", "summer", "autumn", "winter")
SEASON_WORDS = (("fresh", "light"), ("cool", "beach"), ("cozy", "harvest"), ("warm", "thermal"))
# (name, title words, first week, last week) on a 52-week calendar
HOLIDAYS = (("newyear", ("party", "countdown"), 0, 1), ("valentine", ("romantic", "heart"), 5, 6),
            ("halloween", ("spooky", "costume"), 42, 43), ("singlesday", ("deal", "sale"), 44, 45),
            ("christmas", ("gift", "festive"), 49, 51))
NOISE_WORDS = ("new", "hot", "best", "quality", "fashion", "style", "free", "shipping", "2026", "official",
               "original", "top", "mini", "pro", "max", "set", "pack", "cute", "cool", "wow")


@dataclass
class WorldConfig:
    """Sizes and rates of the synthetic world (defaults: the notes' ~4k items, ~5k users)."""

    n_items: int = 4000
    n_users: int = 5000
    n_brands: int = 60
    min_length: int = 10          # interactions per user, including validation and test
    max_length: int = 40
    zipf: float = 1.1             # popularity ~ 1 / rank^zipf
    noise_words: float = 0.15     # probability of a noise word after each title word
    bundled_fraction: float = 0.4  # items in a hidden co-purchase bundle of 3-5
    p_bundle: float = 0.3         # after a bundled item, the next is from its bundle
    p_complement: float = 0.15    # jump to a complement category
    p_instruction: float = 0.3    # a training interaction follows an instruction
    brand_boost: float = 4.0
    season_boost: float = 2.0
    holiday_boost: float = 3.0
    longtail_quantile: float = 0.8  # the least popular 80% of items are the long tail


@dataclass
class Catalogue:
    leaf: np.ndarray       # (I,) leaf category
    brand: np.ndarray      # (I,)
    price: np.ndarray      # (I,) tier 0..3
    colour: np.ndarray     # (I,)
    material: np.ndarray   # (I,)
    season: np.ndarray     # (I,) 0..3, or -1 for none
    holiday: np.ndarray    # (I,) index into HOLIDAYS, or -1
    popularity: np.ndarray  # (I,) sampling weight (sums to 1)
    titles: list[str]
    bundle: np.ndarray     # (I,) hidden bundle id, or -1 (never in the text)

    @property
    def n_items(self) -> int:
        return len(self.leaf)

    def longtail(self, quantile: float = 0.8) -> np.ndarray:
        return longtail_mask(self.popularity, quantile)


def longtail_mask(popularity: np.ndarray, quantile: float = 0.8) -> np.ndarray:
    """Boolean mask of the least popular ``quantile`` of items (ties broken by item order)."""
    order = np.argsort(-np.asarray(popularity), kind="stable")
    mask = np.zeros(len(order), bool)
    mask[order[int(round((1 - quantile) * len(order))):]] = True
    return mask


@dataclass
class Examples:
    """Instruction examples: a user's history, a task, its words and argument, the target item."""

    user: list[int] = field(default_factory=list)
    history: list[np.ndarray] = field(default_factory=list)
    task: list[int] = field(default_factory=list)       # index into TASKS
    argument: list[int] = field(default_factory=list)   # leaf, season or holiday named; -1 if none
    instruction: list[str] = field(default_factory=list)
    target: list[int] = field(default_factory=list)
    week: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.target)

    def append(self, user, history, task, argument, instruction, target, week) -> None:
        self.user.append(user)
        self.history.append(np.asarray(history, dtype=np.int64))
        self.task.append(task)
        self.argument.append(argument)
        self.instruction.append(instruction)
        self.target.append(target)
        self.week.append(week)


@dataclass
class World:
    catalogue: Catalogue
    sequences: list[np.ndarray]  # each user's full interaction sequence (train + valid + test)
    train: Examples              # every training interaction, with its task (JustForYou when uninstructed)
    valid: Examples              # one per user: the second-last interaction
    test: Examples               # one per user: the last interaction
    longtail: np.ndarray         # (I,) mask


def season_of(week: int) -> int:
    return (week % 52) // 13


def next_holiday(week: int) -> int:
    """The holiday running at ``week`` or the next one to come (wrapping around the year)."""
    week %= 52
    for h, (*_, last) in enumerate(HOLIDAYS):
        if week <= last:
            return h
    return 0


def make_catalogue(cfg: WorldConfig, seed: int) -> Catalogue:
    rng = rng_stream(seed, "recsys-catalogue")
    n, n_leaves = cfg.n_items, len(LEAVES)
    leaf = rng.integers(0, n_leaves, n)
    # brands belong to 1-3 leaves of one top category
    brand_leaves = []
    for _ in range(cfg.n_brands):
        top = rng.integers(0, n_leaves // N_LEAVES_PER_TOP)
        k = rng.integers(1, 4)
        brand_leaves.append(top * N_LEAVES_PER_TOP + rng.choice(N_LEAVES_PER_TOP, k, replace=False))
    by_leaf = [[b for b, leaves in enumerate(brand_leaves) if c in leaves] for c in range(n_leaves)]
    brand = np.array([rng.choice(by_leaf[c]) if by_leaf[c] else rng.integers(cfg.n_brands) for c in leaf])
    price = rng.integers(0, 4, n)
    colour = rng.integers(0, len(COLOURS), n)
    material = rng.integers(0, len(MATERIALS), n)
    # season tags correlate with the leaf: each leaf has a favourite season
    leaf_season = rng.integers(0, 4, n_leaves)
    has_season = rng.random(n) < 0.5
    season = np.where(has_season, np.where(rng.random(n) < 0.7, leaf_season[leaf], rng.integers(0, 4, n)), -1)
    holiday = np.where(rng.random(n) < 0.12, rng.integers(0, len(HOLIDAYS), n), -1)
    ranks = rng.permutation(n) + 1
    popularity = 1.0 / ranks ** cfg.zipf
    popularity /= popularity.sum()
    bundle = np.full(n, -1)
    members = rng.permutation(n)[: int(cfg.bundled_fraction * n)]
    start, b = 0, 0
    while start < len(members) - 2:
        size = int(rng.integers(3, 6))
        bundle[members[start:start + size]] = b
        start, b = start + size, b + 1
    titles = []
    for i in range(n):
        words = [f"brand{brand[i]}", COLOURS[colour[i]], MATERIALS[material[i]], LEAVES[leaf[i]][rng.integers(2)],
                 PRICE_WORDS[price[i]]]
        if season[i] >= 0:
            words.append(SEASON_WORDS[season[i]][rng.integers(2)])
        if holiday[i] >= 0:
            words.append(HOLIDAYS[holiday[i]][1][rng.integers(2)])
        noisy = []
        for w in words:
            noisy.append(w)
            if rng.random() < cfg.noise_words:
                noisy.append(NOISE_WORDS[rng.integers(len(NOISE_WORDS))])
        titles.append(" ".join(noisy))
    return Catalogue(leaf, brand, price, colour, material, season, holiday, popularity, titles, bundle)


def instruction_text(task: int, argument: int, target: int, cat: Catalogue, rng: np.random.Generator) -> str:
    """The words of an instruction; a Query is written from the target's attributes."""
    name = TASKS[task]
    if name == "Query":
        words = [LEAVES[cat.leaf[target]][rng.integers(2)]]
        words += [COLOURS[cat.colour[target]]] if rng.random() < 0.7 else []
        words += [MATERIALS[cat.material[target]]] if rng.random() < 0.5 else []
        words += [f"brand{cat.brand[target]}"] if rng.random() < 0.3 else []
        rng.shuffle(words)
        return "search " + " ".join(words)
    if name == "Category":
        return f"show me {LEAVES[argument][0]}"
    if name == "Season":
        return f"something for {SEASONS[argument]}"
    if name == "Holiday":
        return f"ideas for {HOLIDAYS[argument][0]}"
    return {"JustForYou": "recommend for me", "Longtail": "something less common",
            "Discover": "something new for me"}[name]


class _UserModel:
    """One user's tastes and the item choice rule, for the generator."""

    def __init__(self, cfg: WorldConfig, cat: Catalogue, longtail: np.ndarray, complement: np.ndarray,
                 rng: np.random.Generator):
        self.cfg, self.cat, self.longtail, self.complement, self.rng = cfg, cat, longtail, complement, rng
        n_leaves = len(LEAVES)
        k = rng.integers(2, 5)
        self.mixture = np.zeros(n_leaves)
        self.mixture[rng.choice(n_leaves, k, replace=False)] = rng.dirichlet(np.ones(k))
        liked = np.unique(cat.brand[np.isin(cat.leaf, np.flatnonzero(self.mixture))])
        self.brand_weight = np.ones(cfg.n_brands)
        self.brand_weight[rng.choice(liked, min(3, len(liked)), replace=False)] = cfg.brand_boost
        self.price_pref = rng.integers(0, 4)

    def item_weights(self, week: int, seen: np.ndarray) -> np.ndarray:
        cat, cfg = self.cat, self.cfg
        w = cat.popularity * self.brand_weight[cat.brand] * np.exp(-np.abs(cat.price - self.price_pref))
        w = w * np.where(cat.season == season_of(week), cfg.season_boost, 1.0)
        w = w * np.where(cat.holiday == next_holiday(week), cfg.holiday_boost, 1.0)
        w[seen] = 0.0
        return w

    def choose(self, leaf_weight: np.ndarray, allowed: np.ndarray, week: int, seen: np.ndarray) -> int:
        w = self.item_weights(week, seen) * leaf_weight[self.cat.leaf] * allowed
        if w.sum() <= 0:  # nothing fits (tiny catalogues): relax the leaf preference, then the filter
            w = self.item_weights(week, seen) * allowed
        if w.sum() <= 0:
            w = self.item_weights(week, seen) + 1e-12
            w[seen] = 0.0
        return int(self.rng.choice(len(w), p=w / w.sum()))

    def natural(self, prev: int | None, week: int, seen: np.ndarray) -> int:
        """An uninstructed choice: bundle partner, complement category, or the user's mixture."""
        cat, rng, everything = self.cat, self.rng, np.ones(self.cat.n_items, bool)
        if prev is not None and cat.bundle[prev] >= 0 and rng.random() < self.cfg.p_bundle:
            partners = (cat.bundle == cat.bundle[prev]) & ~np.isin(np.arange(cat.n_items), seen)
            if partners.any():
                return int(rng.choice(np.flatnonzero(partners)))
        if prev is not None and rng.random() < self.cfg.p_complement:
            leaf_weight = np.eye(len(LEAVES))[self.complement[cat.leaf[prev]]]
        else:
            leaf_weight = np.eye(len(LEAVES))[rng.choice(len(LEAVES), p=self.mixture)]
        return self.choose(leaf_weight, everything, week, seen)

    def instructed(self, task: int, prev: int | None, week: int, seen: np.ndarray) -> tuple[int, int]:
        """(target, argument) for an instruction of ``task``."""
        cat, rng, name = self.cat, self.rng, TASKS[task]
        everything, n_leaves = np.ones(cat.n_items, bool), len(LEAVES)
        if name in ("JustForYou", "Query"):
            return self.natural(prev, week, seen), -1
        if name == "Category":
            leaf = rng.choice(n_leaves, p=self.mixture) if rng.random() < 0.5 else rng.integers(n_leaves)
            return self.choose(np.eye(n_leaves)[leaf], everything, week, seen), int(leaf)
        if name == "Longtail":
            return self.choose(self.mixture + 0.02, self.longtail, week, seen), -1
        if name == "Discover":
            history_leaves = np.bincount(cat.leaf[seen], minlength=n_leaves) if len(seen) else np.zeros(n_leaves)
            top3 = np.argsort(-history_leaves, kind="stable")[:3]
            leaf_weight = np.ones(n_leaves)
            leaf_weight[top3] = 0.0
            return self.choose(leaf_weight, everything, week, seen), -1
        if name == "Season":
            s = season_of(week)
            return self.choose(self.mixture + 0.05, cat.season == s, week, seen), s
        h = next_holiday(week)
        return self.choose(self.mixture + 0.05, cat.holiday == h, week, seen), h


def make_world(cfg: WorldConfig | None = None, seed: int = 0) -> World:
    """The synthetic catalogue, users, sequences and the train / valid / test instruction examples."""
    cfg = cfg or WorldConfig()
    if cfg.min_length < 3 or cfg.max_length < cfg.min_length:
        raise UserError(f"need 3 <= min_length <= max_length, got {cfg.min_length} and {cfg.max_length}")
    cat = make_catalogue(cfg, seed)
    longtail = cat.longtail(cfg.longtail_quantile)
    rng = rng_stream(seed, "recsys-users")
    n_leaves = len(LEAVES)
    complement = (np.arange(n_leaves) + rng.integers(1, n_leaves, n_leaves)) % n_leaves  # sparse, one per leaf
    text_rng = rng_stream(seed, "recsys-instructions")
    world = World(cat, [], Examples(), Examples(), Examples(), longtail)
    for u in range(cfg.n_users):
        user = _UserModel(cfg, cat, longtail, complement, rng)
        length = int(rng.integers(cfg.min_length, cfg.max_length + 1))
        week = int(rng.integers(0, 52))
        sequence: list[int] = []
        for t in range(length):
            held_out = t >= length - 2
            instructed = held_out or rng.random() < cfg.p_instruction
            task = int(rng.integers(len(TASKS))) if instructed else 0
            seen = np.asarray(sequence, dtype=np.int64)
            prev = sequence[-1] if sequence else None
            target, argument = user.instructed(task, prev, week, seen)
            if t > 0:  # the first interaction has no history to learn from
                split = world.test if t == length - 1 else world.valid if t == length - 2 else world.train
                split.append(u, seen, task, argument, instruction_text(task, argument, target, cat, text_rng),
                             target, week % 52)
            sequence.append(target)
            week += int(rng.integers(0, 3))
        world.sequences.append(np.asarray(sequence, dtype=np.int64))
    return world


# ----------------------------------------------------------------------------- RecBole atomic files

@dataclass
class AtomicData:
    """Interactions from RecBole atomic files, ids remapped to 0..n-1 in order of first appearance."""

    user_ids: list[str]
    item_ids: list[str]
    sequences: list[np.ndarray]  # per user, items in time order
    item_text: list[str]         # one line of text per item (token/token_seq fields joined); "" if no .item
    item_fields: dict[str, list[str]] = field(default_factory=dict)  # each .item column, per item ("" if absent)


def _read_atomic(path: Path) -> tuple[list[str], list[str], list[list[str]]]:
    """(field names, field types, rows) of one atomic file; one UserError per problem."""
    if not path.is_file():
        raise UserError(f"atomic file not found: {path}")
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text: {exc}") from None
    if not rows:
        raise UserError(f"{path} is empty (expected a header such as 'user_id:token<TAB>item_id:token')")
    names, types = [], []
    for col in rows[0]:
        name, sep, kind = col.partition(":")
        if not sep or kind not in ("token", "token_seq", "float", "float_seq"):
            raise UserError(f"{path}: header field '{col}' is not name:type with type token, token_seq, float "
                            "or float_seq")
        names.append(name)
        types.append(kind)
    body = [r for r in rows[1:] if r]
    for line, row in enumerate(body, start=2):
        if len(row) != len(names):
            raise UserError(f"{path}, line {line}: {len(row)} fields, the header has {len(names)}")
    return names, types, body


def load_atomic(inter_path: str | Path, item_path: str | Path | None = None) -> AtomicData:
    """Read ``.inter`` (user_id, item_id, optional timestamp) and optionally ``.item`` text fields.

    Interactions are ordered by timestamp (stable: file order breaks ties, and is the order
    when there is no timestamp column).
    """
    inter_path = Path(inter_path)
    names, types, rows = _read_atomic(inter_path)
    for needed in ("user_id", "item_id"):
        if needed not in names:
            raise UserError(f"{inter_path}: no '{needed}' column (header: {', '.join(names)})")
    if not rows:
        raise UserError(f"{inter_path} has a header but no interactions")
    u_col, i_col = names.index("user_id"), names.index("item_id")
    times = np.zeros(len(rows))
    if "timestamp" in names:
        t_col = names.index("timestamp")
        if types[t_col] != "float":
            raise UserError(f"{inter_path}: timestamp must be declared as 'timestamp:float'")
        for line, row in enumerate(rows, start=2):
            try:
                times[line - 2] = float(row[t_col])
            except ValueError:
                raise UserError(f"{inter_path}, line {line}: timestamp '{row[t_col]}' is not a number") from None
    user_index: dict[str, int] = {}
    item_index: dict[str, int] = {}
    per_user: list[list[tuple[float, int, int]]] = []
    for n, row in enumerate(rows):
        u = user_index.setdefault(row[u_col], len(user_index))
        i = item_index.setdefault(row[i_col], len(item_index))
        if u == len(per_user):
            per_user.append([])
        per_user[u].append((times[n], n, i))
    sequences = [np.array([i for _, _, i in sorted(events)], dtype=np.int64) for events in per_user]
    item_text = [""] * len(item_index)
    item_fields: dict[str, list[str]] = {}
    if item_path is not None:
        item_path = Path(item_path)
        inames, itypes, irows = _read_atomic(item_path)
        if "item_id" not in inames:
            raise UserError(f"{item_path}: no 'item_id' column (header: {', '.join(inames)})")
        id_col = inames.index("item_id")
        text_cols = [c for c, kind in enumerate(itypes) if kind in ("token", "token_seq") and c != id_col]
        item_fields = {name: [""] * len(item_index) for c, name in enumerate(inames) if c != id_col}
        for row in irows:
            if row[id_col] in item_index:
                i = item_index[row[id_col]]
                item_text[i] = " ".join(row[c] for c in text_cols).lower()
                for c, name in enumerate(inames):
                    if c != id_col:
                        item_fields[name][i] = row[c]
    return AtomicData(list(user_index), list(item_index), sequences, item_text, item_fields)


DEFAULT_INSTRUCTION = "recommend for me"


def leave_out(sequences: list[np.ndarray], n_held_out: int) -> tuple[Examples, list[Examples]]:
    """Leave-n-out split of time-ordered sequences into JustForYou examples.

    Users with at least ``n_held_out + 2`` interactions give their last ``n_held_out`` as one
    example each (``held_out[k]`` = position ``len - n_held_out + k``, e.g. validation then
    test); every earlier position ``t >= 1`` is a training example with history ``seq[:t]``.
    Shorter users are training data only.
    """
    train, held_out = Examples(), [Examples() for _ in range(n_held_out)]
    for user, seq in enumerate(sequences):
        first_held = len(seq) - n_held_out if len(seq) >= n_held_out + 2 else len(seq)
        for t in range(1, len(seq)):
            split = train if t < first_held else held_out[t - first_held]
            split.append(user, seq[:t], 0, -1, DEFAULT_INSTRUCTION, int(seq[t]), 0)
    return train, held_out


def recbole_example_files(name: str = "ml-100k") -> tuple[Path, Path]:
    """(``.inter``, ``.item``) of a data set shipped inside the ``recbole`` wheel, found without importing it.

    Install the data only with ``pip install --no-deps recbole==1.2.1`` (``make install`` does).
    """
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"{name} ships inside the recbole wheel, which is not installed: run "
                        "`pip install --no-deps recbole==1.2.1` (data only; nanorepro never imports it)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / name
    inter, item = folder / f"{name}.inter", folder / f"{name}.item"
    if not inter.is_file():
        raise UserError(f"{inter} not found: this recbole install does not ship the {name} example")
    return inter, item
