import pickle

import pytest
import torch

from agent.errors import UserInputError
from agent.tasks import build_model, load_dataset, load_task, read_checkpoint, save_checkpoint
from agent.tasks.models import check_model_spec


def test_mnist1d_is_offline_deterministic_and_split():
    a = load_dataset("mnist1d", seed=0)
    b = load_dataset("mnist1d", seed=0)
    assert a.input_shape == (1, 40) and a.num_classes == 10
    assert (len(a.train), len(a.val), len(a.test)) == (8400, 1200, 2400)
    assert torch.equal(a.val.tensors[0], b.val.tensors[0])
    c = load_dataset("mnist1d", seed=1)
    assert not torch.equal(a.val.tensors[0], c.val.tensors[0])


def test_digits_split_sizes_sum_to_dataset():
    d = load_dataset("digits")
    assert d.input_shape == (1, 8, 8)
    assert len(d.train) + len(d.val) + len(d.test) == 1797
    big = load_dataset("digits32")
    assert big.input_shape == (1, 32, 32) and big.train[0][0].shape == (1, 32, 32)
    assert torch.equal(big.test.tensors[1], d.test.tensors[1]), "same split, only resized"


@pytest.mark.parametrize("name", ["cifar10", "mnist", "fashion-mnist"])
def test_torchvision_datasets_need_a_local_root(name, tmp_path):
    with pytest.raises(UserInputError, match="--data-root"):
        load_dataset(name)
    with pytest.raises(UserInputError, match="does not exist"):
        load_dataset(name, data_root=str(tmp_path / "missing"))
    with pytest.raises(UserInputError, match="not found"):
        load_dataset(name, data_root=str(tmp_path))  # exists but empty, no --download


def test_imagefolder_reads_a_local_tree(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (20, 20), (i * 40, 10, 200 if cls == "cat" else 0)).save(folder / f"{i}.png")
    d = load_dataset(f"imagefolder:{tmp_path}")
    assert d.num_classes == 2 and d.input_shape == (3, 64, 64)
    x, y = d.train[0]
    assert x.shape == (3, 64, 64)


@pytest.mark.parametrize("spec,shape", [("cnn1d", (1, 40)), ("mlp", (1, 28, 28)), ("lenet", (1, 28, 28)),
                                        ("resnet20", (3, 32, 32)), ("tv:resnet18", (3, 32, 32)),
                                        ("tv:mobilenet_v2", (1, 32, 32))])
def test_models_build_and_forward(spec, shape):
    model = build_model(spec, shape, 7)
    assert model(torch.randn(2, *shape)).shape == (2, 7)


def test_user_model_factory_spec():
    model = build_model("tests.agent.user_models:make_net", (1, 40), 5)
    assert model(torch.randn(3, 1, 40)).shape == (3, 5)


@pytest.mark.parametrize("spec", ["resnet7", "tv:not_a_model", "nosuchpkg.mod:make", "tests.agent.user_models:nope"])
def test_unknown_models_are_user_errors(spec):
    with pytest.raises(UserInputError) as err:
        check_model_spec(spec)
    assert spec in str(err.value)


def test_checkpoint_roundtrip_and_metadata(tiny_task, tiny_checkpoint):
    raw = torch.load(tiny_checkpoint, weights_only=True)  # tensors and plain data only
    assert raw["model"] == "cnn1d" and raw["dataset"] == "mnist1d"
    task = load_task(tiny_checkpoint)
    assert task.fingerprint == tiny_task.fingerprint
    x = tiny_task.example_input(4)
    assert torch.allclose(task.model(x), tiny_task.model(x))


def test_checkpoint_that_does_not_match_the_model(tiny_checkpoint):
    with pytest.raises(UserInputError, match="does not match model 'resnet20'"):
        load_task(tiny_checkpoint, model="resnet20")


def test_pickled_module_checkpoints_need_explicit_trust(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(build_model("mlp", (1, 40), 10), path)
    with pytest.raises(UserInputError, match="--trust-checkpoint"):
        read_checkpoint(path)
    assert "module" in read_checkpoint(path, trust=True)


def test_garbage_checkpoint_is_a_user_error(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(pickle.dumps({"a": 1})[:5])
    with pytest.raises(UserInputError):
        read_checkpoint(path)


def test_save_checkpoint_is_loadable_weights_only(tiny_task, tmp_path):
    path = save_checkpoint(tiny_task, tmp_path / "c.pt")
    assert "state_dict" in torch.load(path, weights_only=True)
