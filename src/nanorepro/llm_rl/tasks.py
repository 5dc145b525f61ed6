"""Procedural tasks with verifiers, made for real RL headroom in tiny models (our design, from the notes).

T1, chain arithmetic (verifiable): prompt "12+34+56=", completion "<46>102." where the
thinking in <...> holds the running sums and the answer follows. "Noisy" demonstrations
shift the first running sum by +-1 or +-10 and carry the error through, so that a model
trained on them is right when greedy but wrong at times when sampling: headroom that RL
can remove (it cannot teach arithmetic the model lacks).

T2, general-QA-like with a shortcut: a knowledge base of people -> cities -> countries is
memorised from sentences ("anna lives in ROMA." "ROMA is in ITA."); a question lists four
countries, the thinking recalls "<ROMA:ITA>", the answer is the option letter. In the RL
training prompts the correct option is "A" 75% of the time (the shortcut); the balanced
test split places it uniformly and the anti-shortcut split never at "A".

Rewards never raise on malformed output: it scores 0 and is counted as malformed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

T1_ALPHABET = "0123456789+=<>,."
T2_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ?:;=,.<>"
LETTERS = "ABCD"


@dataclass(frozen=True)
class Problem:
    prompt: str
    gold: str  # the reference completion (thinking and answer)
    answer: str  # what the verifier accepts after the thinking
    meta: dict


# --------------------------------------------------------------------------- T1: chain arithmetic


def t1_problem(numbers: tuple[int, ...], noisy: bool = False, rng: np.random.Generator | None = None) -> Problem:
    """Prompt "a+b+c=", gold "<a+b>a+b+c." (running sums before the last, comma-separated)."""
    sums = np.cumsum(numbers).tolist()
    if noisy:  # shift the first running sum and carry it through the chain
        shift = int(rng.choice([-10, -1, 1, 10]))
        sums = [s + shift for s in sums]
    thinking = ",".join(str(s) for s in sums[1:-1])
    prompt = "+".join(str(n) for n in numbers) + "="
    return Problem(prompt, f"<{thinking}>{sums[-1]}.", str(sum(numbers)), {"numbers": numbers})


def t1_split(numbers: tuple[int, ...]) -> str:
    """Disjoint train/test problems: about 1 in 8 tuples is a test tuple."""
    h = sum((i + 3) * 7919 * n for i, n in enumerate(numbers)) % 8
    return "test" if h == 0 else "train"


def t1_sample(rng: np.random.Generator, n: int, split: str, count: int = 3, noisy_frac: float = 0.0) -> list[Problem]:
    out = []
    while len(out) < n:
        numbers = tuple(int(x) for x in rng.integers(10, 100, count))
        if t1_split(numbers) != split:
            continue
        out.append(t1_problem(numbers, noisy=rng.random() < noisy_frac, rng=rng))
    return out


T1_PATTERN = re.compile(r"^<(\d+(?:,\d+)*)?>(\d+)\.$")


def t1_reward(completion: str, problem: Problem) -> tuple[float, bool]:
    """(1 if the final number is the sum, else 0; malformed?) — never raises."""
    m = T1_PATTERN.match(completion)
    if m is None:
        return 0.0, True
    return float(m.group(2) == problem.answer), False


# --------------------------------------------------------------------------- T2: knowledge QA with a shortcut


PERSON_TEMPLATES = ("{p} lives in {c}.", "{c} is the home of {p}.", "the city of {p} is {c}.")
CITY_TEMPLATES = ("{c} is in {k}.", "the country of {c} is {k}.")


@dataclass(frozen=True)
class KnowledgeBase:
    people: list[str]  # 5 lower-case letters each
    cities: list[str]  # 4 upper-case letters each
    countries: list[str]  # 3 upper-case letters each
    home: dict[str, str]  # person -> city
    country: dict[str, str]  # city -> country
    roles: dict[str, str]  # person -> "sft" | "rl" | "test"

    def facts(self) -> list[str]:
        """Every fact in several phrasings: paraphrased facts are what makes knowledge extractable
        in new formats (Allen-Zhu & Li, Physics of Language Models 3.1)."""
        people = [t.format(p=p, c=self.home[p]) for p in self.people for t in PERSON_TEMPLATES]
        return people + [t.format(c=c, k=self.country[c]) for c in self.cities for t in CITY_TEMPLATES]


def make_kb(rng: np.random.Generator, n_people: int = 300, n_cities: int = 40, n_countries: int = 12,
            sft: float = 0.5, rl: float = 0.3) -> KnowledgeBase:
    def names(n, length, alphabet, taken=()):
        out = set()
        while len(out) < n:
            name = "".join(rng.choice(list(alphabet), length))
            if name not in taken:
                out.add(name)
        return sorted(out)

    people = names(n_people, 5, "abcdefghijklmnopqrstuvwxyz")
    countries = names(n_countries, 3, "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    cities = names(n_cities, 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    country = {c: countries[i % n_countries] for i, c in enumerate(rng.permutation(cities))}
    home = {p: cities[int(rng.integers(n_cities))] for p in people}
    order = rng.permutation(people)
    n_sft, n_rl = int(sft * n_people), int(rl * n_people)
    roles = {p: "sft" if i < n_sft else "rl" if i < n_sft + n_rl else "test" for i, p in enumerate(order)}
    return KnowledgeBase(people, cities, countries, home, country, roles)


def t2_problem(kb: KnowledgeBase, person: str, correct_at: int, rng: np.random.Generator) -> Problem:
    city = kb.home[person]
    truth = kb.country[city]
    others = [c for c in kb.countries if c != truth]
    options = [str(x) for x in rng.choice(others, 3, replace=False)]
    options.insert(correct_at, truth)
    listing = ",".join(f"{LETTERS[i]}={c}" for i, c in enumerate(options))
    letter = LETTERS[correct_at]
    return Problem(f"?{person}:{listing};", f"<{city}:{truth}>{letter}.", letter,
                   {"person": person, "city": city, "country": truth, "options": options})


def t2_sample(kb: KnowledgeBase, rng: np.random.Generator, n: int, role: str, position: str) -> list[Problem]:
    """``position``: "shortcut" (correct at A 75%), "balanced" (uniform) or "anti" (never A)."""
    pool = [p for p in kb.people if kb.roles[p] == role]
    out = []
    for _ in range(n):
        person = pool[int(rng.integers(len(pool)))]
        if position == "shortcut":
            at = 0 if rng.random() < 0.75 else int(rng.integers(1, 4))
        elif position == "anti":
            at = int(rng.integers(1, 4))
        else:
            at = int(rng.integers(4))
        out.append(t2_problem(kb, person, at, rng))
    return out


T2_PATTERN = re.compile(r"^<([A-Z]*):([A-Z]*)>([ABCD])\.$")


def t2_reward(completion: str, problem: Problem) -> tuple[float, bool]:
    m = T2_PATTERN.match(completion)
    if m is None:
        return 0.0, True
    return float(m.group(3) == problem.answer), False


def thinking_span(completion: str) -> tuple[int, int] | None:
    """Character span [start, end) of the thinking "<...>" (brackets included), or None."""
    start, end = completion.find("<"), completion.find(">")
    if start != 0 or end < 0:
        return None
    return 0, end + 1
