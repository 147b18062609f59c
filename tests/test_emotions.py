"""Class names across data sets (pasm.emotions): FER2013's names onto RAF-DB's, aliases, and remapped outputs."""
import json

import pytest
import torch

from pasm.data.readers import AffectNet, AffectNet8, FER2013, RafDB
from pasm.data.synth import CLASSES as SYNTH_CLASSES
from pasm.emotions import ALIASES, canonical, class_mapping, mapped_model, remap_outputs
from pasm.errors import PasmError
from pasm.fer_teacher import FER_CLASSES
from pasm.models import InputSpec, build_model


def test_fer_names_map_onto_rafdb_names_in_another_order():
    mapping = class_mapping(FER_CLASSES, RafDB.CLASSES)
    assert [FER_CLASSES[i] for i in mapping.indices] == ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]
    assert not mapping.identical and mapping.unused == []
    assert mapping.description == "surprise, fear, disgust, happy->happiness, sad->sadness, angry->anger, neutral"
    assert mapping.to_dict()["classes"]["anger"] == "angry"
    assert class_mapping(FER_CLASSES, SYNTH_CLASSES).indices == mapping.indices  # SynthFER uses RAF-DB's names
    assert class_mapping(FER2013.CLASSES, FER_CLASSES).description == "identical"


def test_aliases_are_case_insensitive_and_exact_names_come_first():
    assert canonical(" Happy ") == "happiness" and canonical("MAD") == "anger" and canonical("scared") == "fear"
    assert canonical("pain") == "pain"
    mapping = class_mapping(["Joy", "happiness", "Angry"], ["happiness", "anger"])
    assert mapping.indices == [1, 2]  # 'happiness' is taken by its exact name, not by the alias 'Joy'
    assert mapping.unused == ["Joy"]
    assert class_mapping(["A", "b"], ["b", "a"]).indices == [1, 0]  # any name matches case-insensitively


def test_every_alias_names_one_emotion():
    aliases = [a for names in ALIASES.values() for a in names]
    assert len(aliases) == len(set(aliases))
    assert all(canonical(a) == name for name, names in ALIASES.items() for a in names)


def test_contempt_maps_and_an_extra_checkpoint_class_is_dropped():
    model_classes = ["Neutral", "Happy", "Sad", "Surprised", "Fearful", "Disgusted", "Angry", "Contemptuous"]
    mapping = class_mapping(model_classes, AffectNet8.CLASSES)
    assert mapping.indices == list(range(8)) and mapping.to_dict()["classes"]["contempt"] == "Contemptuous"
    seven = class_mapping(AffectNet8.CLASSES, RafDB.CLASSES)
    assert seven.unused == ["contempt"] and seven.description.endswith("; unused: contempt")
    assert [AffectNet.CODES[i] for i in seven.indices] == ["surprise", "fear", "disgust", "happy", "sad", "anger",
                                                            "neutral"]


def test_data_classes_the_checkpoint_lacks_are_one_error_naming_them():
    with pytest.raises(PasmError) as error:
        class_mapping(FER_CLASSES, ["pain", "happiness", "boredom"], what="folder:faces")
    assert error.value.what == "folder:faces"
    assert "'pain', 'boredom' of the data set have no match among the checkpoint's" in error.value.why
    assert "'happiness'" not in error.value.why.split("among")[0]
    with pytest.raises(PasmError, match="'contempt' of the data set"):
        class_mapping(RafDB.CLASSES, AffectNet8.CLASSES)


def test_two_data_classes_for_one_output_are_an_error():
    with pytest.raises(PasmError, match="'happy', 'joy' of the data set all match the checkpoint's 'happiness'"):
        class_mapping(["happiness", "sadness"], ["happy", "joy", "sad"])


@pytest.mark.parametrize("arch, channels", [("small_cnn", 3), ("mini_xception", 1), ("mobilenet_v3_small", 3)])
def test_remapped_outputs_are_the_selected_logits(arch, channels):
    torch.manual_seed(0)
    model = build_model(arch, 8, InputSpec(32, channels)).eval()
    images = torch.rand(3, channels, 32, 32)
    indices = [7, 2, 0, 5]
    mapped = remap_outputs(model, indices)
    assert mapped.num_classes == 4 and mapped.arch == arch and not mapped.training
    assert torch.allclose(mapped(images), model(images)[:, indices], atol=1e-5)
    assert model.num_classes == 8  # the original is untouched


def test_mapped_model_is_the_model_itself_when_classes_are_identical():
    model = build_model("small_cnn", 7, InputSpec(32, 3))
    same, mapping = mapped_model(model, FER_CLASSES, FER_CLASSES)
    assert same is model and mapping.identical
    other, mapping = mapped_model(model, FER_CLASSES, RafDB.CLASSES)
    assert other is not model and mapping.indices == [5, 2, 1, 3, 4, 0, 6]


def test_compare_with_a_fer_named_teacher_equals_the_same_teacher_in_the_data_sets_order(tmp_path, capsys):
    """The same weights saved twice: in SynthFER's order, and with the final rows in FER2013's order under its names."""
    from pasm.checkpoints import make_meta, save_checkpoint
    from pasm.cli import main
    from pasm.data.synth import write_synth

    write_synth(tmp_path / "synth", train=0, test=7, size=32, seed=3)
    torch.manual_seed(0)
    model = build_model("small_cnn", 7, InputSpec(32, 3)).eval()
    save_checkpoint(tmp_path / "synth_order.safetensors", model, make_meta(model, SYNTH_CLASSES))
    to_fer = [SYNTH_CLASSES.index({"angry": "anger", "happy": "happiness", "sad": "sadness"}.get(n, n))
              for n in FER_CLASSES]
    fer = remap_outputs(model, to_fer)
    save_checkpoint(tmp_path / "fer_order.safetensors", fer, make_meta(fer, FER_CLASSES))
    tables = {}
    for name in ("synth_order", "fer_order"):
        argv = ["compare", "--checkpoint", tmp_path / f"{name}.safetensors", "--data", f"synth:{tmp_path / 'synth'}",
                "--limit", "5", "--max-points", "3", "--device", "cpu", "--json", tmp_path / f"{name}.json"]
        assert main([str(a) for a in argv]) == 0
        tables[name] = (capsys.readouterr().out, json.loads((tmp_path / f"{name}.json").read_text()))
    (plain_text, plain), (fer_text, mapped) = tables["synth_order"], tables["fer_order"]
    assert "classes mapped" not in plain_text and plain["class_mapping"]["description"] == "identical"
    assert "classes mapped (checkpoint->data): surprise, fear, disgust, happy->happiness" in fer_text
    assert mapped["compared_images"] == plain["compared_images"] and mapped["methods"].keys() == plain["methods"].keys()
    for method, row in plain["methods"].items():
        assert mapped["methods"][method] == pytest.approx(row, abs=1e-5), method
    assert mapped["attack"] == pytest.approx(plain["attack"], abs=1e-5)
