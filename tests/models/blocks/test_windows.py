import pytest
import torch

from biqa.models.blocks.windows import (
    OverlappingCrossWindowAttention,
    RelativePositionBias,
    SwinBlock,
    window_attention_mask,
    window_partition,
    window_reverse,
)


def test_partition_reverse_round_trip_and_window_content():
    x = torch.randn(2, 6, 9, 5)
    windows = window_partition(x, 3)
    assert windows.shape == (2 * 2 * 3, 9, 5)
    assert torch.equal(window_reverse(windows, 3, 6, 9), x)
    # Windows are row-major per image: the second window of image 1 is rows 0-2, columns 3-5.
    assert torch.equal(windows[6 + 1], x[1, 0:3, 3:6].reshape(9, 5))


def _reference_mask(height, width, valid_h, valid_w, window, shift):
    """Brute force in the original (unrolled) frame: two tokens meet iff they lie in the same shifted window."""
    num = window * window
    size_h, size_w = height // window, width // window
    mask = torch.zeros(size_h * size_w, num, num, dtype=torch.bool)

    def original(i, j):
        return (i + shift) % height, (j + shift) % width

    def shifted_window(r, c):
        return (r + window - shift) // window if shift else r // window, (
            c + window - shift
        ) // window if shift else c // window

    for wi in range(size_h):
        for wj in range(size_w):
            cells = [(wi * window + a, wj * window + b) for a in range(window) for b in range(window)]
            for q, (qi, qj) in enumerate(cells):
                for k, (ki, kj) in enumerate(cells):
                    qr, qc = original(qi, qj)
                    kr, kc = original(ki, kj)
                    same = shifted_window(qr, qc) == shifted_window(kr, kc)
                    valid = kr < valid_h and kc < valid_w
                    mask[wi * size_w + wj, q, k] = (same and valid) or q == k
    return mask


@pytest.mark.parametrize(
    ("padded", "valid", "window", "shift"),
    [
        ((4, 4), (4, 4), 2, 1),
        ((6, 6), (6, 6), 3, 1),
        ((6, 9), (6, 9), 3, 2),
        ((6, 6), (5, 4), 3, 1),
        ((6, 6), (5, 5), 3, 0),
    ],
)
def test_shifted_window_mask_matches_brute_force(padded, valid, window, shift):
    mask = window_attention_mask(padded, valid, window, shift)
    assert torch.equal(mask, _reference_mask(*padded, *valid, window, shift))


def test_shifted_window_mask_tiny_case_by_hand():
    # 4x4 map, 2x2 windows, shift 1: the last window (bottom-right) holds four pieces, one token each.
    mask = window_attention_mask((4, 4), (4, 4), 2, 1)
    assert mask[0].all()  # top-left window: all four tokens come from one shifted window
    assert torch.equal(mask[3], torch.eye(4, dtype=torch.bool))
    # Top-right window: columns 2 and 3 of the rolled map come from columns 3 and 0: two pieces.
    assert torch.equal(
        mask[1], torch.tensor([[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]], dtype=torch.bool)
    )


def _changed_positions(block, x, position):
    block.eval()
    with torch.no_grad():
        base = block(x)
        perturbed = x.clone()
        # A random direction: a constant shift of every channel would vanish in the LayerNorm.
        perturbed[(0, *position)] += 10.0 * torch.randn(x.shape[-1])
        out = block(perturbed)
    return (out - base).abs().amax(dim=-1)[0] > 1e-5


@pytest.mark.parametrize("shift", [0, 2])
def test_swin_block_mixes_only_within_its_shifted_window(shift):
    torch.manual_seed(0)
    block = SwinBlock(dim=8, num_heads=2, window_size=4, shift_size=shift)
    x = torch.randn(1, 8, 8, 8)
    changed = _changed_positions(block, x, (5, 1))
    group = lambda i: (i + 4 - shift) // 4 if shift else i // 4  # noqa: E731
    expected = torch.tensor(
        [[group(i) == group(5) and group(j) == group(1) for j in range(8)] for i in range(8)]
    )
    assert torch.equal(changed, expected)


def test_padding_is_never_attended_to():
    # A 5x5 map in a 7x7 window equals plain attention over its 25 tokens (a 5x5 window, no padding).
    torch.manual_seed(0)
    padded = SwinBlock(dim=8, num_heads=2, window_size=7, relative_position_bias=False).eval()
    exact = SwinBlock(dim=8, num_heads=2, window_size=5, relative_position_bias=False).eval()
    exact.load_state_dict(padded.state_dict())
    x = torch.randn(2, 5, 5, 8)
    with torch.no_grad():
        torch.testing.assert_close(padded(x), exact(x))


@pytest.mark.parametrize(
    ("window", "overlap", "key_window"), [(7, 0.5, 10), (4, 0.5, 6), (4, 0.25, 5), (4, 0.0, 4)]
)
def test_ocab_key_window_size_and_content(window, overlap, key_window):
    block = OverlappingCrossWindowAttention(dim=8, num_heads=2, window_size=window, overlap_ratio=overlap)
    assert block.key_window_size == key_window
    size = 2 * window
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    coordinates = torch.stack([rows + 1, cols + 1], dim=-1)[None].float()  # 0 marks padding
    keys = block.key_windows(coordinates)
    assert keys.shape == (4, key_window * key_window, 2)
    before = (key_window - window) // 2
    for index in range(4):
        top, left = (index // 2) * window - before, (index % 2) * window - before
        for k in range(key_window * key_window):
            r, c = top + k // key_window, left + k % key_window
            inside = 0 <= r < size and 0 <= c < size
            expected = [r + 1, c + 1] if inside else [0, 0]
            assert keys[index, k].tolist() == expected


def test_ocab_reaches_neighbouring_windows_but_no_further():
    torch.manual_seed(0)
    block = OverlappingCrossWindowAttention(dim=8, num_heads=2, window_size=4, overlap_ratio=0.5)  # keys 6x6
    x = torch.randn(1, 12, 12, 8)
    first_window = (slice(0, 4), slice(0, 4))
    # Row 4 lies in the key window of window (0, 0) (rows -1..4), row 5 does not.
    assert _changed_positions(block, x, (4, 2))[first_window].all()
    assert not _changed_positions(block, x, (5, 2))[first_window].any()


def test_ocab_output_shape_and_padding_on_uneven_map():
    block = OverlappingCrossWindowAttention(dim=8, num_heads=2, window_size=7, overlap_ratio=0.5)
    out = block(torch.randn(2, 9, 11, 8))
    assert out.shape == (2, 9, 11, 8)
    assert torch.isfinite(out).all()


def test_relative_position_bias_covers_every_offset():
    bias = RelativePositionBias(query_window=4, key_window=6, num_heads=3)
    assert bias().shape == (3, 16, 36)
    assert bias.index.min() == 0 and bias.index.max() == bias.table.shape[0] - 1 == (4 + 6 - 1) ** 2 - 1
    # The same offset shares one entry: query 0 vs key 0 and query 1 vs key 1 (both offset (margin, margin)).
    assert bias.index[0, 0] == bias.index[1, 1]


def test_swin_block_rejects_a_shift_as_large_as_the_window():
    with pytest.raises(ValueError, match="shift_size"):
        SwinBlock(dim=8, num_heads=2, window_size=4, shift_size=4)
