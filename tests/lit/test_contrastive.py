import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from biqa.data.datasets.distortions import DISTORTION_NAMES
from biqa.lit.contrastive import (
    DistortedViews,
    DistortionContrastive,
    _skimage_photos,
    dead_leaves,
    distortion_class,
    load_reference_images,
    supervised_nt_xent,
)
from biqa.models.distortion_encoder import DistortionEncoder


def references(count: int = 8, size: int = 40, seed: int = 0) -> list[np.ndarray]:
    """Smooth random textures with a few sharp-edged rectangles: something for blur to remove."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        image = ndimage.gaussian_filter(rng.random((size, size, 3)), sigma=(3, 3, 0))
        image = (image - image.min()) / (image.max() - image.min())
        for _ in range(3):
            top, left = rng.integers(0, size - 8, 2)
            image[top : top + rng.integers(4, 12), left : left + rng.integers(4, 12)] = rng.random(3)
        images.append((image * 255).astype(np.uint8))
    return images


def test_supervised_nt_xent_matches_a_loop_over_anchors_and_positives():
    torch.manual_seed(0)
    z = torch.randn(10, 6)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 0, 4])  # 3 and 4 have no positive: skipped
    normed = F.normalize(z, dim=1)
    terms = []
    for i in range(10):
        others = [a for a in range(10) if a != i]
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            continue
        denominator = torch.logsumexp(torch.stack([normed[i] @ normed[a] / 0.1 for a in others]), 0)
        terms.append(torch.stack([-(normed[i] @ normed[p] / 0.1 - denominator) for p in positives]).mean())
    torch.testing.assert_close(supervised_nt_xent(z, labels, 0.1), torch.stack(terms).mean())


def test_supervised_nt_xent_rewards_grouping_by_label():
    labels = torch.tensor([0, 0, 1, 1])
    grouped = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    mixed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert supervised_nt_xent(grouped, labels) < 0.01 < 5 < supervised_nt_xent(mixed, labels)
    with pytest.raises(ValueError, match="positive"):
        supervised_nt_xent(grouped, torch.arange(4))


def test_positives_share_type_and_level():
    types, levels = torch.tensor([0, 0, 1, 1]), torch.tensor([1, 2, 1, 1])
    classes = distortion_class(types, levels)
    assert classes[0] != classes[1] and classes[0] != classes[2] and classes[2] == classes[3]
    assert (
        len(
            set(
                distortion_class(
                    torch.arange(14).repeat(5), torch.arange(1, 6).repeat_interleave(14)
                ).tolist()
            )
        )
        == 70
    )


def test_distorted_views_shapes_labels_and_seeding():
    dataset = DistortedViews(
        references(4), crop_size=24, samples=6, distortions=["jpeg", "darken"], levels=[2, 4], seed=3
    )
    sample = dataset[1]
    assert sample["views"].shape == (2, 3, 24, 24) and sample["views"].dtype == torch.uint8
    assert DISTORTION_NAMES[int(sample["distortion_type"])] in ("jpeg", "darken")
    assert int(sample["distortion_level"]) in (2, 4)
    assert not torch.equal(sample["views"][0], sample["views"][1])  # two crops, not one image twice
    assert torch.equal(dataset[1]["views"], sample["views"])  # a seeded dataset repeats itself
    fresh = DistortedViews(references(4), crop_size=24, samples=6)
    assert not torch.equal(fresh[1]["views"], fresh[1]["views"])  # unseeded: new draws every visit
    with pytest.raises(ValueError, match="crop_size"):
        DistortedViews(references(2, size=20), crop_size=24)


def test_reference_images_from_a_folder_plus_dead_leaves(tmp_path):
    from PIL import Image

    Image.fromarray(references(1, size=500)[0]).save(tmp_path / "a.png")
    Image.fromarray(references(1, size=30)[0][..., 0]).save(tmp_path / "b.png")  # grey
    (tmp_path / "notes.txt").write_text("not an image")
    images = load_reference_images(str(tmp_path), max_side=100, dead_leaves_count=2, dead_leaves_size=48)
    assert [image.shape for image in images] == [(100, 100, 3), (30, 30, 3), (48, 48, 3), (48, 48, 3)]
    assert all(image.dtype == np.uint8 for image in images)
    assert len(load_reference_images("none", dead_leaves_count=3, dead_leaves_size=32)) == 3
    with pytest.raises(FileNotFoundError):
        load_reference_images(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no reference images"):
        load_reference_images("none")


def test_unseen_skimage_photos_leave_out_the_synthetic_datasets_photos():
    from biqa.data.datasets.synthetic import COLOUR_SOURCES, GREY_SOURCES

    photos = _skimage_photos()
    unseen = [name for name in photos if name not in set(COLOUR_SOURCES) | set(GREY_SOURCES)]
    assert set(COLOUR_SOURCES) | set(GREY_SOURCES) < set(photos) and len(unseen) >= 4
    assert len(load_reference_images("skimage_unseen", max_side=64)) == len(unseen)


def test_dead_leaves_cover_the_image_with_discs_of_many_sizes():
    image = dead_leaves(64, np.random.default_rng(0))
    again = dead_leaves(64, np.random.default_rng(0))
    assert image.shape == (64, 64, 3) and np.array_equal(image, again)
    colours, counts = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
    assert len(colours) > 30  # many leaves...
    assert counts.max() > 100 and np.median(counts) < 30  # ...some large, most small (p(r) ~ r^-3)


def _batch(dataset: DistortedViews) -> dict[str, torch.Tensor]:
    samples = [dataset[i] for i in range(len(dataset))]
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


def _separation(encoder: DistortionEncoder, train: dict, held_out: dict) -> tuple[float, float]:
    """On held-out views: mean cosine similarity of same-type embeddings minus that of different types, and
    the accuracy of nearest-centroid type classification with centroids from the training views.
    Embeddings are centred on the training mean, so the comparison is about what differs between views."""
    encoder.eval()
    with torch.no_grad():
        train_z, held_z = (encoder(b["views"].flatten(0, 1).float() / 255) for b in (train, held_out))
    mean = train_z.mean(0)
    train_z, held_z = F.normalize(train_z - mean, dim=1), F.normalize(held_z - mean, dim=1)
    train_types, held_types = (b["distortion_type"].repeat_interleave(2) for b in (train, held_out))
    similarity = held_z @ held_z.T
    same = held_types[:, None] == held_types[None, :]
    off_diagonal = ~torch.eye(len(held_z), dtype=torch.bool)
    margin = similarity[same & off_diagonal].mean() - similarity[~same].mean()
    types = train_types.unique()
    centroids = torch.stack([train_z[train_types == t].mean(0) for t in types])
    accuracy = ((held_z @ centroids.T).argmax(1) == torch.searchsorted(types, held_types)).float().mean()
    return margin.item(), accuracy.item()


def test_contrastive_stage_learns_to_separate_blur_from_noise():
    # 8 tiny references, blur vs noise at level 3, 40 steps on fresh batches of 16 samples (32 views).
    torch.manual_seed(0)
    kinds = {"distortions": ["gaussian_blur", "gaussian_noise"], "levels": [3], "crop_size": 24}
    stream = DistortedViews(references(8, seed=0), samples=16, **kinds)
    train = _batch(DistortedViews(references(8, seed=0), samples=16, seed=0, **kinds))
    held_out = _batch(DistortedViews(references(8, seed=1), samples=16, seed=1, **kinds))  # unseen content
    encoder = DistortionEncoder(channels=(8, 16, 32), projection_dim=16)
    margin_before, _ = _separation(encoder, train, held_out)
    module = DistortionContrastive(encoder, temperature=0.1)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        encoder.train()
        loss = module.contrastive_loss(_batch(stream))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    margin_after, accuracy = _separation(encoder, train, held_out)
    # log(31) ~ 3.43 when all 32 views look alike; ~2.7 (log of the positives per anchor) when perfectly grouped.
    assert np.mean(losses[-5:]) < np.mean(losses[:3]) - 0.3, losses
    assert margin_after > margin_before + 0.5, (margin_before, margin_after)
    assert accuracy >= 0.85
