"""bench-faithfulness: the scorer on descriptions written as radiologists and models write them
(`tests/data/faithfulness/`, README there): per error type the recall (rejected under the default
thresholds and a contradiction named, of any type) and how often the named type is the planted one;
precision (of the rows rejected for a contradiction, the share with an error planted); faithful
acceptance; the planted words found (a contradiction's span overlapping them). Both splits: `dev` the
rules were tuned on, `test` held out. Speed on one core against a floor that runs the vocabulary's
compiled patterns (findings, places, modalities, sizes, appearance, colours, heads) over the same texts.
Targets on `test`: faithful acceptance >= 0.95, recall >= 0.9 for every type, >= 500 rows/s."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import finish, peak_rss_mb, table

from medtrinity_core.describe.faithfulness import TYPES
from medtrinity_core.describe.faithfulness.captions import Thresholds, read_rows, score_rows
from medtrinity_core.describe.faithfulness.lexicon import lexicon

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "faithfulness"
REPEATS = 3  # timed passes over a split (the best is kept)


def measure(split: str) -> dict:
    lex = lexicon()
    lines = (CORPUS / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    rows = read_rows(lines, split, lex)
    list(score_rows(rows[:20], Thresholds(), lex))  # warm: spaCy, the lexicon, the pattern caches
    best, out = float("inf"), []
    for _ in range(REPEATS):
        start = time.perf_counter()
        out = list(score_rows(rows, Thresholds(), lex))
        best = min(best, time.perf_counter() - start)
    matchers = (lex.findings, lex.places, lex.modalities, lex.sizes, lex.appearance, lex.colours, lex.head_words, lex.region_words)
    floor = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        for row, _ in rows:
            for matcher in matchers:
                matcher.find(row["text"])
        floor = min(floor, time.perf_counter() - start)

    faithful = [r for r in out if r["label"] == "faithful"]
    recall, typed, spans = {}, {}, {}
    for kind in TYPES:
        planted = [r for r in out if r["label"] == kind]
        caught = [r for r in planted if not r["accepted"] and r["contradictions"]]
        recall[kind] = round(len(caught) / len(planted), 3) if planted else None
        typed[kind] = round(sum(1 for r in caught if any(c["type"] == kind for c in r["contradictions"])) / len(caught), 3) if caught else None
        spans[kind] = round(sum(1 for r in caught if _overlaps(r)) / len(caught), 3) if caught else None
    contradicted = [r for r in out if r["contradictions"] and r["faithfulness"] < 1.0]
    return {
        "split": split, "rows": len(out), "faithful": len(faithful), "rows_per_s": len(out) / best, "floor_rows_per_s": len(out) / floor,
        "faithful_acceptance": round(sum(r["accepted"] for r in faithful) / len(faithful), 3),
        "faithful_contradicted": sum(1 for r in faithful if r["contradictions"]), "faithful_incomplete": sum(1 for r in faithful if not r["contradictions"] and not r["accepted"]),
        "recall_by_type": recall, "type_named_by_type": typed, "span_found_by_type": spans,
        "precision": round(sum(1 for r in contradicted if r["label"] != "faithful") / len(contradicted), 3) if contradicted else None,
        "false_alarms": Counter(c["type"] for r in faithful for c in r["contradictions"]),
        "mean_completeness_faithful": round(sum(r["completeness"] for r in faithful) / len(faithful), 3),
    }


def _overlaps(row: dict) -> bool:
    start = row["text"].find(row["error_span"])
    end = start + len(row["error_span"])
    return any(a < end and start < b for a, b in (c["span"] for c in row["contradictions"]))


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the target is stated
    dev, test = measure("dev"), measure("test")
    print(f"bench-faithfulness: {dev['rows']} dev rows (tuned on) and {test['rows']} test rows (held out) from {CORPUS.relative_to(CORPUS.parents[2])}, one core")
    rows = [("", "dev / test")]
    rows.append(("faithful acceptance (target test >= 0.95)", f"{dev['faithful_acceptance']:.3f} / {test['faithful_acceptance']:.3f}"))
    rows.append(("faithful rejected: contradicted, incomplete", f"{dev['faithful_contradicted']}+{dev['faithful_incomplete']} / {test['faithful_contradicted']}+{test['faithful_incomplete']}"))
    for kind in TYPES:
        rows.append((f"recall {kind} (target test >= 0.9)", f"{dev['recall_by_type'][kind]:.3f} / {test['recall_by_type'][kind]:.3f}"
                     f"   type named {dev['type_named_by_type'][kind]} / {test['type_named_by_type'][kind]}, words found {dev['span_found_by_type'][kind]} / {test['span_found_by_type'][kind]}"))
    rows += [
        ("precision (rejected for a contradiction: planted)", f"{dev['precision']:.3f} / {test['precision']:.3f}"),
        ("false alarms on faithful rows, by type", f"{dict(dev['false_alarms'])} / {dict(test['false_alarms'])}"),
        ("mean completeness of faithful rows", f"{dev['mean_completeness_faithful']:.3f} / {test['mean_completeness_faithful']:.3f}"),
        ("rows/s, scorer (target test >= 500)", f"{dev['rows_per_s']:.0f} / {test['rows_per_s']:.0f}"),
        ("rows/s, floor (the vocabulary's patterns only)", f"{dev['floor_rows_per_s']:.0f} / {test['floor_rows_per_s']:.0f}"),
        ("peak RSS", f"{peak_rss_mb():.0f} MB"),
    ]
    table(rows)
    rss = peak_rss_mb()
    finish("faithfulness", test["rows"], test["rows_per_s"], test["floor_rows_per_s"], ((rss, rss), (rss, rss)),
           faithful_acceptance=test["faithful_acceptance"], recall_by_type=test["recall_by_type"], precision=test["precision"], rows_per_s=round(test["rows_per_s"], 1),
           dev=json.loads(json.dumps({k: v for k, v in dev.items() if k in ("faithful_acceptance", "recall_by_type", "precision", "rows_per_s")})))


if __name__ == "__main__":
    main()
