#!/usr/bin/env python3
"""Validate scenarios/data/twenty_questions.toml against the object list.

Checks the format and name references, resolves the full object x attribute
answer table, reports answer statistics, rejects identical object rows, and
simulates a greedy information-gain 20 Questions player with a noise-free oracle.

Usage: python3 scripts/check_knowledge.py [--dump] [--knowledge PATH] [--objects PATH]
  --dump   also print every object's resolved answer row (for manual review)

Exit status: 0 if everything passes, 1 on any format error, unknown or duplicate
name, or identical pair of object rows; 2 if the simulation misses its targets.
Python 3.11+ (tomllib), stdlib only.
"""
import argparse
import json
import math
import re
import sys
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_KNOWLEDGE = ROOT / "scenarios" / "data" / "twenty_questions.toml"
DEFAULT_OBJECTS = ROOT / "scenarios" / "data" / "twenty_questions_objects.json"

ANSWERS = ("yes", "sometimes", "no")
MIN_ATTRIBUTES = 80
TARGET_MEAN = 7.6
TARGET_MAX = 12
ID_RE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def load_objects(path):
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    names, categories = [], []
    for obj in data["objects"]:
        names.append(obj["names"][0])
        categories.append(obj["category"])
    return names, categories


def load_attributes(path, names, categories, errors):
    """Returns a list of (id, question, {name: answer}) fully resolved."""
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    extra_top = set(doc) - {"attribute", "scenario", "answers"}
    if extra_top:
        errors.append(f"unexpected top-level keys: {sorted(extra_top)}")
    attrs = doc.get("attribute")
    if not isinstance(attrs, list) or not attrs:
        errors.append("no [[attribute]] tables found")
        return []
    name_set = set(names)
    cat_set = set(categories)
    seen_ids, seen_questions = set(), set()
    resolved = []
    for i, attr in enumerate(attrs):
        where = f"attribute #{i + 1} ({attr.get('id', '?')})"
        extra = set(attr) - {"id", "question", *ANSWERS}
        if extra:
            errors.append(f"{where}: unexpected keys {sorted(extra)}")
        aid = attr.get("id")
        q = attr.get("question")
        if not isinstance(aid, str) or not ID_RE.match(aid):
            errors.append(f"{where}: id must be a snake_case string")
        elif aid in seen_ids:
            errors.append(f"{where}: duplicate id {aid!r}")
        seen_ids.add(aid)
        if not isinstance(q, str) or not q.strip().endswith("?") or q != q.strip():
            errors.append(f"{where}: question must be a trimmed string ending with '?'")
        elif q.lower() in seen_questions:
            errors.append(f"{where}: duplicate question {q!r}")
        else:
            seen_questions.add(q.lower())
        if "yes" not in attr:
            errors.append(f"{where}: missing 'yes' list")
        explicit, by_cat = {}, {}
        for ans in ANSWERS:
            lst = attr.get(ans, [])
            if not isinstance(lst, list) or not all(isinstance(x, str) for x in lst):
                errors.append(f"{where}: {ans} must be a list of strings")
                continue
            for entry in lst:
                if entry.startswith("@"):
                    cat = entry[1:]
                    if cat not in cat_set:
                        errors.append(f"{where}: unknown category {entry!r} in {ans}")
                    elif cat in by_cat:
                        errors.append(f"{where}: category {entry!r} in both {by_cat[cat]} and {ans}"
                                      if by_cat[cat] != ans else f"{where}: category {entry!r} repeated in {ans}")
                    else:
                        by_cat[cat] = ans
                else:
                    if entry not in name_set:
                        errors.append(f"{where}: unknown object name {entry!r} in {ans}")
                    elif entry in explicit:
                        errors.append(f"{where}: name {entry!r} in both {explicit[entry]} and {ans}"
                                      if explicit[entry] != ans else f"{where}: name {entry!r} repeated in {ans}")
                    else:
                        explicit[entry] = ans
        row = {}
        for n, c in zip(names, categories):
            row[n] = explicit.get(n) or by_cat.get(c) or "no"
        resolved.append((aid, q, row))
    return resolved


def entropy(counts):
    total = sum(counts)
    return -sum(c / total * math.log2(c / total) for c in counts if c)


def simulate(names, table):
    """table[a][o] -> answer string. Returns the question count per secret."""
    n_attr = len(table)
    order = list(range(len(names)))
    results = []
    for secret in order:
        cand = list(order)
        asked = 0
        used = set()
        while True:
            if len(cand) == 1:
                break
            if len(cand) <= 3:
                for o in cand:  # fixed order: object-list order
                    if o == secret:
                        break
                    asked += 1
                break
            best, best_h = None, -1.0
            for a in range(n_attr):
                if a in used:
                    continue
                h = entropy(Counter(table[a][o] for o in cand).values())
                if h > best_h + 1e-12:
                    best, best_h = a, h
            if best is None or best_h <= 1e-12:
                # Cannot split further: guess the rest one by one.
                asked += cand.index(secret)
                break
            used.add(best)
            asked += 1
            ans = table[best][secret]
            cand = [o for o in cand if table[best][o] == ans]
        results.append(asked)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--knowledge", default=str(DEFAULT_KNOWLEDGE))
    ap.add_argument("--objects", default=str(DEFAULT_OBJECTS))
    ap.add_argument("--dump", action="store_true")
    args = ap.parse_args()

    names, categories = load_objects(args.objects)
    errors = []
    if len(set(names)) != len(names):
        errors.append("objects JSON has duplicate canonical names")
    try:
        attrs = load_attributes(args.knowledge, names, categories, errors)
    except (OSError, tomllib.TOMLDecodeError) as e:
        print(f"ERROR: cannot load {args.knowledge}: {e}")
        return 1
    if len(attrs) < MIN_ATTRIBUTES:
        errors.append(f"only {len(attrs)} attributes (< {MIN_ATTRIBUTES})")
    if errors:
        for e in errors:
            print("ERROR:", e)
        return 1

    n_obj = len(names)
    print(f"objects: {n_obj} in {len(set(categories))} categories")
    print(f"attributes: {len(attrs)}")
    totals = Counter()
    for _, _, row in attrs:
        totals.update(row.values())
    cells = len(attrs) * n_obj
    for ans in ANSWERS:
        print(f"  {ans:9s} cells: {totals[ans]:6d} ({totals[ans] / cells:.1%})")
    fracs = sorted(sum(1 for v in row.values() if v == "yes") / n_obj for _, _, row in attrs)
    med = fracs[len(fracs) // 2] if len(fracs) % 2 else (fracs[len(fracs) // 2 - 1] + fracs[len(fracs) // 2]) / 2
    print(f"  per-attribute yes fraction: min {fracs[0]:.3f}  median {med:.3f}  max {fracs[-1]:.3f}")
    balanced = sum(1 for f in fracs if 0.15 <= f <= 0.60)
    print(f"  attributes with yes fraction in [0.15, 0.60]: {balanced}")
    never_yes = [aid for aid, _, row in attrs if "yes" not in row.values()]
    if never_yes:
        print(f"  WARNING: attributes with no 'yes' object: {never_yes}")

    table = [[row[n] for n in names] for _, _, row in attrs]
    rows = {}
    dups = []
    for o, n in enumerate(names):
        key = tuple(table[a][o] for a in range(len(attrs)))
        if key in rows:
            dups.append((rows[key], n))
        else:
            rows[key] = n
    if dups:
        print(f"IDENTICAL object pairs: {len(dups)}")
        for a, b in dups:
            print(f"  {a} == {b}")
    else:
        print("identical object pairs: none")

    if args.dump:
        for o, n in enumerate(names):
            ys = [attrs[a][0] for a in range(len(attrs)) if table[a][o] == "yes"]
            ss = [attrs[a][0] for a in range(len(attrs)) if table[a][o] == "sometimes"]
            print(f"\n{n} [{categories[o]}]\n  yes: {' '.join(ys)}\n  sometimes: {' '.join(ss)}")

    counts = simulate(names, table)
    mean = sum(counts) / len(counts)
    worst = max(counts)
    print(f"greedy simulation (noise-free oracle): mean questions {mean:.3f}, max {worst}")
    hist = Counter(counts)
    print("  distribution: " + ", ".join(f"{k}:{hist[k]}" for k in sorted(hist)))
    hardest = sorted(range(n_obj), key=lambda o: -counts[o])[:5]
    print("  hardest: " + ", ".join(f"{names[o]}={counts[o]}" for o in hardest))

    if dups:
        return 1
    if mean > TARGET_MEAN or worst > TARGET_MAX:
        print(f"FAIL: target is mean <= {TARGET_MEAN} and max <= {TARGET_MAX}")
        return 2
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
