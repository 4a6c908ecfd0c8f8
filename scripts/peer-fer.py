#!/usr/bin/env python3
"""Times the `fer` package (PyPI `fer`: OpenCV Haar cascade + mini-Xception, TensorFlow) on the
same frames `dgcn bench` uses, and scores its labels on the labelled clip's stable frames.

Research measurement for README → Speed; not part of the tests. Set-up (a separate venv; `fer`'s
declared dependencies pull PyTorch and FFmpeg wrappers it does not need for this):

    python3 -m venv /tmp/peers
    /tmp/peers/bin/pip install --no-deps fer==22.5.1
    /tmp/peers/bin/pip install tensorflow-cpu "opencv-contrib-python-headless<5" pandas requests Pillow tqdm \
        "moviepy<2" matplotlib
    /tmp/peers/bin/python scripts/peer-fer.py [CLIP] [FRAMES]

Prints one JSON object: median and p95 milliseconds per frame (detection + recognition, as
`FER.detect_emotions` does it), frames with a face, and the label agreement on the frames at least
10 frames away from a label change.
"""
import csv
import json
import os
import statistics
import sys
import time

CLIP = sys.argv[1] if len(sys.argv) > 1 else "../shared/clips/synth_tfeid_s01_expressions.mp4"
FRAMES = int(sys.argv[2]) if len(sys.argv) > 2 else 510


def main():
    import cv2
    import tensorflow as tf
    from fer import FER

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    video = cv2.VideoCapture(CLIP)
    frames = []
    while len(frames) < FRAMES:
        ok, frame = video.read()
        if not ok:
            break
        frames.append(frame)
    if not frames:
        sys.exit(f"error: no frames read from {CLIP}")
    detector = FER(mtcnn=False)
    detector.detect_emotions(frames[0])  # warm-up (graph building)
    times, labels = [], []
    for frame in frames:
        t0 = time.perf_counter()
        faces = detector.detect_emotions(frame)
        times.append((time.perf_counter() - t0) * 1000.0)
        if faces:
            best = max(faces, key=lambda f: f["box"][2] * f["box"][3])
            labels.append(max(best["emotions"], key=best["emotions"].get))
        else:
            labels.append(None)
    result = {
        "clip": CLIP,
        "frames": len(frames),
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": round(sorted(times)[int(0.95 * (len(times) - 1))], 2),
        "frames_with_face": sum(label is not None for label in labels),
    }
    truth_path = os.path.splitext(CLIP)[0] + "_labels.csv"
    if os.path.exists(truth_path):
        with open(truth_path) as f:
            truth = [row["label"] for row in csv.DictReader(f)][: len(frames)]
        n = len(truth)
        stable = [
            i
            for i in range(n)
            if all(truth[j] == truth[i] for j in range(max(0, i - 10), min(n - 1, i + 10) + 1))
        ]
        agree = sum(labels[i] == truth[i] for i in stable)
        result["stable_frames"] = len(stable)
        result["agreement"] = round(agree / max(1, len(stable)), 4)
        per_class = {}
        for i in stable:
            ok, total = per_class.get(truth[i], (0, 0))
            per_class[truth[i]] = (ok + (labels[i] == truth[i]), total + 1)
        result["per_class"] = {k: f"{a}/{b}" for k, (a, b) in per_class.items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
