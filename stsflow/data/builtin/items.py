"""Domain items in the MMLU-Pro schema: options and answer position per item from the item's own
random stream, balanced answer letters, ids unique across domains."""

from __future__ import annotations

import random

from stsflow.data.builtin.common import DOMAINS
from stsflow.data.builtin.knowledge import _knowledge_pool, _pick_knowledge
from stsflow.data.builtin.numeric import _NUMERIC_TEMPLATES, _numeric_distractors
from stsflow.text.prompts import LETTERS

# ----------------------------------------------------------------------------------------------
# Domain items (MMLU-Pro schema)

def _record(qid: int, name: str, question: str, answer: str, distractors: list[str], explanation: str,
            rng: random.Random, used: list[int]) -> dict:
    # The least-used position so far (random among ties): letters stay balanced, so a model that
    # favours one letter gains nothing, and the order within each round is still unpredictable.
    k = len(distractors) + 1
    pos = min(range(k), key=lambda i: (used[i], rng.random()))
    used[pos] += 1
    options = distractors[:pos] + [answer] + distractors[pos:]
    letter = LETTERS[pos]
    return {"question_id": qid, "question": question, "options": options, "answer": letter,
            "answer_index": pos, "cot_content": f"A: Let's think step by step. {explanation} The answer is ({letter}).",
            "category": name, "src": f"stsflow-synthetic-{name}"}


def domain_items(name: str, n_test: int = 40, n_demos: int = 5, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(test items, demonstration items) for one of ``DOMAINS``; the two splits never share a question.

    ``question_id`` is ``1000 * (domain position + 1) + item index``, so ids are unique across domains.
    """
    if name not in DOMAINS:
        raise ValueError(f"unknown domain {name!r}; known: {', '.join(DOMAINS)}")
    need = n_test + n_demos
    if need >= 1000:
        raise ValueError("at most 999 items per domain keep question ids unique")
    rng = random.Random(f"stsflow-domain:{name}:{seed}")  # str seeds hash stably across runs

    def item_rng(question: str) -> random.Random:
        # Options and answer position of an item come from its own stream, so an item looks the
        # same whatever else is drawn (e.g. demos do not change with n_test).
        return random.Random(f"stsflow-item:{name}:{seed}:{question}")

    items: list[tuple[str, str, list[str], str, random.Random]] = []
    if name in _NUMERIC_TEMPLATES:
        templates, seen = _NUMERIC_TEMPLATES[name], set()
        attempts = 0
        while len(items) < need:
            attempts += 1
            if attempts > 100 * need:
                raise RuntimeError(f"could not draw {need} distinct {name} questions")
            q, body, value, fmt, mistakes = templates[len(items) % len(templates)](rng)
            if q in seen:
                continue
            seen.add(q)
            irng = item_rng(q)
            k = irng.choice((4, 5, 6))
            items.append((q, fmt(value), _numeric_distractors(irng, value, fmt, mistakes, k - 1), body, irng))
    else:
        for _, q, answer, wrong, expl in _pick_knowledge(_knowledge_pool(name), n_test, n_demos, rng):
            irng = item_rng(q)
            k = min(irng.choice((4, 5, 6)), len(wrong) + 1)
            items.append((q, answer, irng.sample(wrong, k - 1), expl, irng))
    base = 1000 * (DOMAINS.index(name) + 1)
    used = [0] * len(LETTERS)
    records = [_record(base + i, name, q, a, wrong, expl, irng, used)
               for i, (q, a, wrong, expl, irng) in enumerate(items)]
    # Demos come first, so changing n_test leaves the few-shot demonstrations unchanged.
    return records[n_demos:], records[:n_demos]


POOL_SIZE = 60  # what every numeric generator yields beyond its 45 test and demo items


def pool_items(name: str, n_test: int = 40, n_demos: int = 5, n_pool: int = POOL_SIZE,
               seed: int = 0) -> list[dict]:
    """A train/pool split of a numeric domain (replay prompts for the data mixture): the items
    drawn after the test split from the same stream, so the test and demonstration splits stay
    exactly as ``domain_items`` gives them and no pool question repeats one of theirs. A
    knowledge domain has none: its test split already uses every fact of its bank."""
    if name not in _NUMERIC_TEMPLATES:
        raise ValueError(f"builtin domain {name!r} has no pool split: its test and demonstration "
                         "items use every fact of its bank (numeric domains have one)")
    test, _ = domain_items(name, n_test + n_pool, n_demos, seed)
    return test[n_test:]
