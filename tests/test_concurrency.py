"""One loaded model shared by concurrent callers, as the app's sessions share the cached teacher.

Analyses running at the same time on one model must neither fail nor change each other's results: nothing a
call does to the model (eval mode, requires_grad, Grad-CAM's layer hook) may be seen by another call.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from pasm import explorer
from pasm.checkpoints import load_checkpoint, make_meta, save_checkpoint
from pasm.faces import align_face
from pasm.models import InputSpec, build_model

CLASSES = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
THREADS = 6
FACES = 6


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    path = tmp_path_factory.mktemp("concurrency") / "teacher.safetensors"
    model = build_model("small_cnn", len(CLASSES), InputSpec(48, 3))
    save_checkpoint(path, model, make_meta(model, CLASSES))
    return load_checkpoint(path)


@pytest.fixture(scope="module")
def faces():
    """Whole-image crops of generated photos: each gives its own attack, region and maps."""
    rng = np.random.default_rng(0)
    return [align_face(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8), None, 48) for _ in range(FACES)]


def analyse(teacher, faces, call):
    return explorer.analyse_face(teacher, faces[call % FACES], explorer.AttackSettings(max_points=10), seed=call % FACES)


def same_result(one, other):
    arrays = [(one[group], other[group]) for group in ("masks", "erased", "maps")]
    return (one["report"] == other["report"] and np.array_equal(one["crop"], other["crop"])
            and all(np.array_equal(a[name], b[name]) for a, b in arrays for name in a))


def test_analyses_on_one_shared_model_from_many_threads_equal_the_serial_ones(teacher, faces):
    serial = [analyse(teacher, faces, call) for call in range(FACES)]
    calls = 8 * FACES
    with ThreadPoolExecutor(THREADS) as pool:
        concurrent = list(pool.map(lambda call: analyse(teacher, faces, call), range(calls)))  # re-raises a failure
    differing = [call for call in range(calls) if not same_result(concurrent[call], serial[call % FACES])]
    assert differing == [], f"{len(differing)} of {calls} concurrent analyses differ from the serial ones"
    assert not teacher.model.training
    assert all(p.requires_grad for p in teacher.model.parameters())
    assert all(p.grad is None for p in teacher.model.parameters())


def test_an_attack_leaves_an_eval_models_parameters_as_they_are(teacher, faces):
    """The attack used to freeze and unfreeze the parameters around each call, which a concurrent call saw."""
    seen = []
    hook = teacher.model.register_forward_pre_hook(
        lambda module, inputs: seen.append([p.requires_grad for p in module.parameters()]))
    try:
        analyse(teacher, faces, 0)
    finally:
        hook.remove()
    assert seen and all(all(flags) for flags in seen)
    assert torch.is_grad_enabled()
