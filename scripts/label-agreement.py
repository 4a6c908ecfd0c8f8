#!/usr/bin/env python3
# How often FER2013's label equals FER+'s majority label on the same test image: the ceiling for
# FER2013 test accuracy of a network trained to FER+'s labels. Images are matched by their pixels
# (12×12 block means; FER2013 here is Kaggle's JPEGs, FER+ the lossless PNGs).
#
#   mkdir /tmp/agree && cd /tmp/agree
#   tar xzf ../path/to/shared/data/fer2013.tar.gz fer2013/test
#   tar xzf ../path/to/shared/data/ferplus.tar.gz FER2013Valid FER2013Test
#   python3 /path/to/dgcn/scripts/label-agreement.py      # needs numpy and pillow
#
# Measured 2026-11-30 on ../shared/data: 7,152 of FER2013's 7,178 test images matched; the labels
# agree on 62.61 % (README → Results, FER2013 row).
import csv
import glob
import os
from collections import Counter

import numpy as np
from PIL import Image


def load(p):
    return np.asarray(Image.open(p).convert("L"), dtype=np.float32)


def small(a):
    return a.reshape(12, 4, 12, 4).mean(axis=(1, 3)).ravel()


fer_labels, X = [], []
for cls in sorted(os.listdir("fer2013/test")):
    for p in glob.glob(f"fer2013/test/{cls}/*.jpg"):
        fer_labels.append(cls)
        X.append(small(load(p)))
X = np.array(X)
names = ["neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt"]
plus_labels, Y = [], []
for d in ["FER2013Valid", "FER2013Test"]:
    for row in csv.reader(open(f"{d}/label.csv")):
        votes = np.array([int(x) for x in row[2:10]])
        if votes.sum() == 0 or not os.path.exists(f"{d}/{row[0]}"):
            continue
        # The majority among the eight emotions (unknown and not-a-face ignored).
        plus_labels.append(names[int(votes.argmax())])
        Y.append(small(load(f"{d}/{row[0]}")))
Y = np.array(Y)
dist = (X**2).sum(1)[:, None] - 2 * X @ Y.T + (Y**2).sum(1)[None, :]
nearest = dist.argmin(1)
rms = np.sqrt(np.maximum(dist[np.arange(len(X)), nearest], 0) / X.shape[1])
matched = rms < 3.0
agree = np.array([fer_labels[i] == plus_labels[nearest[i]] for i in range(len(X))])
print(f"FER2013 test: {len(X)} images; FER+ valid + test: {len(Y)} labelled; matched: {matched.sum()}")
print(f"FER2013 label == FER+ majority label: {agree[matched].mean() * 100:.2f} %")
pairs = Counter(
    (fer_labels[i], plus_labels[nearest[i]]) for i in range(len(X)) if matched[i] and not agree[i]
)
print("most common disagreements (FER2013 → FER+):", pairs.most_common(6))
