#!/usr/bin/env python3
# How often TFEID's own raters see the expression a photo was posed as: the ceiling for any
# recogniser scored against TFEID's posed labels, and for the labelled clip made from performer
# 01's photos. TFEID ships `voting.xls`: for each photo, the share of raters who chose each of six
# expressions (happy, angry, sad, fear, disgust, surprise; no neutral option) and a "peace" column
# (not explained in its Readme.txt; it reads 0.17–0.89, mean 0.69, on the neutral photos and
# 0.05–0.14 on average on the expressive ones).
#
#   mkdir /tmp/raters && cd /tmp/raters
#   tar xzf ../path/to/shared/data/tfeid.tar.gz voting.xls
#   python3 /path/to/dgcn/scripts/tfeid-raters.py voting.xls     # needs xlrd (pip install xlrd)
#   python3 /path/to/dgcn/scripts/tfeid-raters.py voting.xls predictions_tfeid.csv
#
# With a `dgcn eval --out DIR` predictions file for TFEID (cross-validation or cross-dataset), it
# also splits the network's accuracy by whether the raters' top choice is the posed expression.
#
# Measured 2026-11-30 on ../shared/data (README → Results, TFEID and clip rows): the raters' top
# choice is the posed expression on 78.4 % of the 1,154 expressive photos (happy 100 %, surprise
# 91.8, angry 88.5, sad 84.3, disgust 72.7, fear 16.6 %), a single rater's on 65.8 % (the mean
# share of votes for the posed expression); performer 01, the clip's, 56 % (second
# lowest of 29). Of the clip's six expression photos (found by matching its aligned frames to
# performer 01's photos) the raters read angry as disgust (0.66 against 0.26) and fear as
# surprise (0.64 against 0.07); surprise and sad lead only weakly (0.36 and 0.17, each below the
# photo's "peace", 0.42 and 0.64).
import csv
import sys
from collections import Counter, defaultdict

import xlrd

EXPRESSIONS = ["happy", "angry", "sad", "fear", "disgust", "surprise"]
POSED = {"a": "neutral", "0": "neutral", "b": "happy", "c": "sad", "d": "angry",
         "e": "disgust", "f": "fear", "g": "surprise"}
# The photo of each expression that synth_tfeid_s01_expressions.mp4 shows (performer 01's first
# photo of performance type 1 for each letter; its neutral frames match 0101a06).
CLIP = ["0101a06", "0111b01", "0111g03", "0111c03", "0111d02", "0111e02", "0111f01"]

sheet = xlrd.open_workbook(sys.argv[1] if len(sys.argv) > 1 else "voting.xls").sheet_by_index(0)
header = sheet.row_values(0)
assert header[1:7] == EXPRESSIONS and header[8] == "peace", f"unexpected columns {header}"
rows = {}
for r in range(1, sheet.nrows):
    v = sheet.row_values(r)
    rows[v[0][:7]] = (dict(zip(EXPRESSIONS, v[1:7])), v[8])

agree, total, share = Counter(), Counter(), Counter()
with_calm = Counter()
by_type, by_performer = defaultdict(Counter), defaultdict(Counter)
confusion = Counter()
for name, (votes, peace) in rows.items():
    posed = POSED[name[4]]
    if posed == "neutral":
        continue
    top = max(votes, key=votes.get)
    ok = top == posed
    total[posed] += 1
    agree[posed] += ok
    share[posed] += votes[posed]
    with_calm[posed] += ok and votes[posed] >= peace
    confusion[(posed, top)] += 1
    by_type[name[2]]["n"] += 1
    by_type[name[2]]["ok"] += ok
    by_performer[name[:2]]["n"] += 1
    by_performer[name[:2]]["ok"] += ok

n = sum(total.values())
print(f"expressive photos: {n}; raters' top choice = posed label: "
      f"{100 * sum(agree.values()) / n:.1f} %")
print(f"  ... and above the 'peace' column too: {100 * sum(with_calm.values()) / n:.1f} %")
print(f"  a single rater's choice = posed label (mean share): {100 * sum(share.values()) / n:.1f} %")
for e in EXPRESSIONS:
    print(f"  {e:9s} {agree[e]:3d}/{total[e]:3d} = {100 * agree[e] / total[e]:5.1f} %   "
          f"mean share {share[e] / total[e]:.2f}   "
          f"else: {', '.join(f'{t} {c}' for (p, t), c in confusion.most_common() if p == e and t != e)}")
kinds = {"1": "theatric", "2": "FACS criteria", "3": "personal event"}
for t, c in sorted(by_type.items()):
    print(f"  performance type {t} ({kinds.get(t, '?')}): {100 * c['ok'] / c['n']:.1f} % of {c['n']}")
ranked = sorted(by_performer.items(), key=lambda kv: kv[1]["ok"] / kv[1]["n"])
print("performers, lowest agreement first: " + ", ".join(
    f"{p} {100 * c['ok'] / c['n']:.0f} %" for p, c in ranked))
print("the labelled clip's photos (posed → raters' shares):")
for name in CLIP:
    votes, peace = rows[name]
    top = max(votes, key=votes.get)
    print(f"  {name} {POSED[name[4]]:9s} top {top:9s} "
          + " ".join(f"{e} {votes[e]:.2f}" for e in EXPRESSIONS) + f"  peace {peace:.2f}")

if len(sys.argv) > 2:
    seen = Counter()
    right = Counter()
    called = defaultdict(Counter)
    for row in csv.DictReader(open(sys.argv[2])):
        name = row["path"].rsplit("/", 1)[-1][:7]
        if name not in rows:
            continue
        posed = row["label"]
        votes, _ = rows[name]
        if posed == "neutral":
            group = "neutral"
        elif max(votes, key=votes.get) == posed:
            group = "raters agree"
        else:
            group = "raters disagree"
        seen[group] += 1
        right[group] += row["predicted"] == posed
        if group == "raters disagree":
            called[max(votes, key=votes.get)][row["predicted"]] += 1
    total = sum(seen.values())
    print(f"{sys.argv[2]}: {total} TFEID faces, accuracy {100 * sum(right.values()) / total:.2f} %")
    for g in ["neutral", "raters agree", "raters disagree"]:
        if seen[g]:
            print(f"  {g:16s} {right[g]:4d}/{seen[g]:4d} = {100 * right[g] / seen[g]:5.1f} %")
    for top, c in sorted(called.items()):
        print(f"  raters said {top}: the network said " + ", ".join(f"{k} {n}" for k, n in c.most_common()))
