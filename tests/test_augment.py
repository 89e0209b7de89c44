"""--augment: the standard CIFAR crop and flip and Gaussian noise, composable, drawn reproducibly."""
from __future__ import annotations

import pytest
import torch

from robustbench_ode.errors import UserError
from robustbench_ode.training.augment import Compose, GaussianNoise, HorizontalFlip, RandomCrop, parse_augment


def _distinct_images(n: int = 64) -> torch.Tensor:
    return torch.arange(n * 3 * 8 * 8, dtype=torch.float32).view(n, 3, 8, 8) + 1.0  # no zeros: padding shows


def test_a_crop_is_a_window_of_the_zero_padded_image_at_most_pad_pixels_away():
    x = _distinct_images()
    torch.manual_seed(0)
    out = RandomCrop(2)(x)
    padded = torch.nn.functional.pad(x, (2,) * 4)
    offsets = set()
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 8])]
        assert len(matches) == 1, i
        offsets.add(matches[0])
    assert out.shape == x.shape and len(offsets) > 10  # offsets differ between images


def test_a_flip_mirrors_about_half_the_images_and_leaves_the_rest():
    x = _distinct_images(400)
    torch.manual_seed(0)
    out = HorizontalFlip()(x)
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert bool((flipped ^ kept).all()) and 150 < int(flipped.sum()) < 250


def test_a_plus_separated_list_applies_each_augmentation_in_order_with_reproducible_draws():
    aug = parse_augment("crop:4+flip+gaussian:0.1:p=0.5")
    assert aug == Compose((RandomCrop(4), HorizontalFlip(), GaussianNoise((0.1,), 0.5)))
    x = torch.rand(16, 3, 8, 8)
    torch.manual_seed(3)
    first = aug(x)
    torch.manual_seed(3)
    assert torch.equal(first, aug(x))
    torch.manual_seed(3)
    by_hand = GaussianNoise((0.1,), 0.5)(HorizontalFlip()(RandomCrop(4)(x)))
    assert torch.equal(first, by_hand)


def test_one_augmentation_is_returned_alone_and_none_is_none():
    assert parse_augment("flip") == HorizontalFlip() and parse_augment("crop:4") == RandomCrop(4)
    assert parse_augment("") is None


@pytest.mark.parametrize("spec", ["crop", "crop:0", "crop:2.5", "flip:1", "rotate:10", "crop:4+", "gaussian"])
def test_a_malformed_augmentation_is_a_one_line_error_naming_augment(spec):
    with pytest.raises(UserError, match="^augment '") as err:
        parse_augment(spec)
    assert "\n" not in str(err.value) and err.value.options[0] == "augment"


def test_training_with_crop_and_flip_resumes_to_the_same_weights(tmp_path):
    from robustbench_ode.training.config import TrainConfig
    from robustbench_ode.training.trainer import Trainer

    from .helpers import TINY, assert_same_weights, cut_and_resume

    cfg = TINY | {"epochs": 2, "augment": "crop:1+flip"}
    straight = Trainer(TrainConfig(**cfg), tmp_path / "straight")
    straight.run()
    assert_same_weights(straight.model, cut_and_resume(cfg, tmp_path / "cut").model)
