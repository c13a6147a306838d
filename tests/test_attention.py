"""Attention mechanisms: each against global attention or a reference written out here, on grids
that are non-square and that no window divides; and the cross-attention block unchanged."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode

from code.models.attention import Attention
from code.models.blocks.cross_attention import SegmentCrossAttention
from code.models.shapes import ShapeSpec
from code.registry import ATTENTIONS, BLOCKS, ConfigError, PartFactory
from code.utils.logging import get_logger
from code.utils.tensors import bchw_to_bnc, bnc_to_bchw

CHANNELS, HEADS = 8, 2
# Each mechanism's keys, for the tests that run them all.
SETTINGS = {
    "global": {},
    "linear": {},
    "cross_covariance": {},
    "window": {"window_size": 4},
    "shifted_window": {"window_size": 4},
    "spatial_reduction": {"ratio": 2, "pool_size": None},
}
POOLED = {"ratio": None, "pool_size": 3}  # PVT v2's spatial reduction


def build(name: str, block_index: int = 1, **settings: int | None) -> Attention:
    """Mechanism ``name`` as the block of ``block_index`` in its stage builds it (odd by default:
    ``shifted_window`` shifts there)."""
    return factory(name, settings)(channels=CHANNELS, num_heads=HEADS, block_index=block_index)


def projections() -> tuple[nn.Linear, nn.Linear]:
    return nn.Linear(CHANNELS, CHANNELS), nn.Linear(CHANNELS, 2 * CHANNELS)


def tokens(grid: tuple[int, int], batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, grid[0] * grid[1], CHANNELS)


def heads(t: torch.Tensor) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, d)."""
    return t.unflatten(-1, (HEADS, -1)).transpose(1, 2)


def merged(t: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, d) -> (B, N, C)."""
    return t.transpose(1, 2).flatten(2)


def reference_qkv(
    x: torch.Tensor, query: nn.Linear, key_value: nn.Linear, keys_from: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    k, v = key_value(x if keys_from is None else keys_from).chunk(2, dim=-1)
    return heads(query(x)), heads(k), heads(v)


def softmax_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | float = 0.0
) -> torch.Tensor:
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + bias
    return scores.softmax(dim=-1) @ v


def test_layout_helpers_invert_each_other() -> None:
    x = torch.randn(2, 3, 7, 5)
    assert torch.equal(bnc_to_bchw(bchw_to_bnc(x), 7, 5), x)
    t = torch.randn(2, 35, 3)
    assert torch.equal(bchw_to_bnc(bnc_to_bchw(t, 7, 5)), t)
    assert torch.equal(bchw_to_bnc(x)[:, 5 * 2 + 4], x[:, :, 2, 4])  # row-major positions
    with pytest.raises(ValueError, match="35 tokens cannot be laid out as 5x5"):
        bnc_to_bchw(t, 5, 5)


@pytest.mark.parametrize("name", ["window", "shifted_window"])
@pytest.mark.parametrize(("grid", "window"), [((4, 4), 4), ((5, 3), 7), ((3, 6), 6)])
def test_one_window_covering_the_map_is_global_attention(
    name: str, grid: tuple[int, int], window: int
) -> None:
    torch.manual_seed(0)
    mechanism, (query, key_value) = build(name, window_size=window), projections()
    with torch.no_grad():
        mechanism.relative_position_bias.zero_()
    x = tokens(grid)
    expected = build("global")(x, grid, query, key_value)
    assert torch.allclose(mechanism(x, grid, query, key_value), expected, atol=1e-5)


def relative_bias(table: torch.Tensor, window: int, rows: int, cols: int) -> torch.Tensor:
    """(heads, T, T) bias of a rows x cols window, offsets looked up one pair at a time."""
    positions = [(i, j) for i in range(rows) for j in range(cols)]
    bias = torch.empty(table.shape[1], len(positions), len(positions))
    for a, (i, j) in enumerate(positions):
        for b, (m, n) in enumerate(positions):
            bias[:, a, b] = table[(i - m + window - 1) * (2 * window - 1) + (j - n + window - 1)]
    return bias


def test_window_attention_is_biased_attention_inside_each_window_of_real_tokens() -> None:
    """7x10 with 4x4 windows: the last window row and column are partly padding; every window's
    real tokens attend to each other alone, with the relative position bias of their offsets."""
    torch.manual_seed(1)
    grid, window = (7, 10), 4
    mechanism, (query, key_value) = build("window", window_size=window), projections()
    x = tokens(grid)
    out = bnc_to_bchw(mechanism(x, grid, query, key_value), *grid)
    table = mechanism.relative_position_bias.detach()
    x_map = bnc_to_bchw(x, *grid)
    for top in range(0, 7, window):
        for left in range(0, 10, window):
            part = x_map[:, :, top : top + window, left : left + window]
            rows, cols = part.shape[-2:]
            q, k, v = reference_qkv(bchw_to_bnc(part), query, key_value)
            expected = softmax_attention(q, k, v, relative_bias(table, window, rows, cols))
            got = bchw_to_bnc(out[:, :, top : top + window, left : left + window])
            assert torch.allclose(got, merged(expected), atol=1e-5), (top, left)


@pytest.mark.parametrize(("grid", "window"), [((7, 10), 4), ((8, 8), 4), ((5, 9), 3)])
def test_shifted_windows_never_attend_across_the_shift_seam(
    grid: tuple[int, int], window: int
) -> None:
    """Perturb one token: only outputs in its shifted window and on its side of the cyclic
    shift's seam may change; and those do change (the test can fail)."""
    torch.manual_seed(2)
    mechanism, (query, key_value) = build("shifted_window", window_size=window), projections()
    height, width = grid
    padded = (height + -height % window, width + -width % window)
    shift = window // 2

    def piece(i: int, j: int) -> tuple[int, int, bool, bool]:
        """The shifted window of original position (i, j), and its side of each seam."""
        rolled = ((i - shift) % padded[0], (j - shift) % padded[1])
        return rolled[0] // window, rolled[1] // window, i < shift, j < shift

    x = tokens(grid, batch=1)
    before = bnc_to_bchw(mechanism(x, grid, query, key_value), *grid)[0]
    for i, j in [(0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1), (1, 2)]:
        changed = x.clone()
        changed[0, i * width + j] += 3.0
        after = bnc_to_bchw(mechanism(changed, grid, query, key_value), *grid)[0]
        differs = (after != before).any(dim=0)
        for m in range(height):
            for n in range(width):
                if piece(m, n) != piece(i, j):
                    assert not differs[m, n], f"token {(i, j)} reached {(m, n)}"
        neighbours = [
            (m, n)
            for m in range(height)
            for n in range(width)
            if piece(m, n) == piece(i, j) and (m, n) != (i, j)
        ]
        assert all(differs[m, n] for m, n in neighbours) and differs[i, j]


def test_shifted_window_at_the_seam_is_the_bottom_right_window_of_top_left_tokens() -> None:
    """On an 8x8 grid with 4x4 windows shifted by 2, token (0, 0) shares its rolled window with
    the tokens (6..7, 6..7), (6..7, 0..1) and (0..1, 6..7) yet attends only to (0..1, 0..1)."""
    torch.manual_seed(3)
    grid = (8, 8)
    mechanism, (query, key_value) = build("shifted_window", window_size=4), projections()
    with torch.no_grad():
        mechanism.relative_position_bias.zero_()
    x = tokens(grid)
    out = bnc_to_bchw(mechanism(x, grid, query, key_value), *grid)
    corner = bnc_to_bchw(x, *grid)[:, :, :2, :2]
    q, k, v = reference_qkv(bchw_to_bnc(corner), query, key_value)
    expected = merged(softmax_attention(q, k, v))
    assert torch.allclose(bchw_to_bnc(out[:, :, :2, :2]), expected, atol=1e-5)


def test_spatial_reduction_with_ratio_1_is_global_attention() -> None:
    torch.manual_seed(4)
    mechanism, (query, key_value) = (
        build("spatial_reduction", ratio=1, pool_size=None),
        projections(),
    )
    assert not list(mechanism.parameters())  # as in PVT: no reduction, no conv, no norm
    grid = (5, 7)
    x = tokens(grid)
    expected = build("global")(x, grid, query, key_value)
    assert torch.allclose(mechanism(x, grid, query, key_value), expected, atol=1e-6)


def test_spatial_reduction_projects_keys_from_the_reduced_grid() -> None:
    """PVT v1 on a 7x10 grid with ratio 3: keys and values from a 3x4 grid (zero-padded to
    9x12), conv then LayerNorm, all before the key/value projection."""
    torch.manual_seed(5)
    mechanism, (query, key_value) = (
        build("spatial_reduction", ratio=3, pool_size=None),
        projections(),
    )
    grid = (7, 10)
    x = tokens(grid)
    padded = F.pad(bnc_to_bchw(x, *grid), (0, 2, 0, 2))
    reduced = F.conv2d(padded, mechanism.reduce.weight, mechanism.reduce.bias, stride=3)
    assert reduced.shape[-2:] == (3, 4)
    keys_from = F.layer_norm(
        bchw_to_bnc(reduced), (CHANNELS,), mechanism.norm.weight, mechanism.norm.bias
    )
    expected = merged(softmax_attention(*reference_qkv(x, query, key_value, keys_from)))
    assert torch.allclose(mechanism(x, grid, query, key_value), expected, atol=1e-5)


def test_pooled_spatial_reduction_has_a_fixed_number_of_keys() -> None:
    """PVT v2's linear variant: pool to 3x3 whatever the grid, 1x1 conv, LayerNorm, GELU."""
    torch.manual_seed(6)
    mechanism, (query, key_value) = build("spatial_reduction", **POOLED), projections()
    _, conv = mechanism.reduce  # the pool has no weights
    for grid in [(7, 10), (2, 5)]:
        x = tokens(grid)
        pooled = F.adaptive_avg_pool2d(bnc_to_bchw(x, *grid), 3)
        reduced = bchw_to_bnc(F.conv2d(pooled, conv.weight, conv.bias))
        keys_from = F.gelu(
            F.layer_norm(reduced, (CHANNELS,), mechanism.norm.weight, mechanism.norm.bias)
        )
        assert keys_from.shape[1] == 9
        expected = merged(softmax_attention(*reference_qkv(x, query, key_value, keys_from)))
        assert torch.allclose(mechanism(x, grid, query, key_value), expected, atol=1e-5)


def test_linear_attention_matches_its_closed_form() -> None:
    """Shen et al.: out_n = Σ_e softmax_e(q_n)_e · Σ_m softmax_m(k)_{m,e} v_m, term by term."""
    torch.manual_seed(7)
    mechanism, (query, key_value) = build("linear"), projections()
    grid = (2, 3)
    x = tokens(grid, batch=1).double()
    query, key_value = query.double(), key_value.double()
    q, k, v = (t[0] for t in reference_qkv(x, query, key_value))  # (heads, N, d)
    expected = torch.zeros_like(q)
    for h in range(HEADS):
        for n in range(6):
            q_soft = q[h, n].exp() / q[h, n].exp().sum()
            for e in range(q.shape[-1]):
                k_soft = k[h, :, e].exp() / k[h, :, e].exp().sum()
                expected[h, n] += q_soft[e] * (k_soft[:, None] * v[h]).sum(0)
    got = mechanism(x, grid, query, key_value)[0]
    assert torch.allclose(got, merged(expected[None])[0], atol=1e-10)


def test_cross_covariance_matches_its_closed_form() -> None:
    """XCiT: each head's channels attend through softmax(τ q̂ᵀ k̂), q̂, k̂ unit over tokens."""
    torch.manual_seed(8)
    mechanism, (query, key_value) = build("cross_covariance"), projections()
    with torch.no_grad():
        mechanism.temperature.copy_(torch.tensor([0.5, 2.0]).view(2, 1, 1))
    grid = (3, 5)
    x = tokens(grid, batch=1)
    q, k, v = (t[0] for t in reference_qkv(x, query, key_value))  # (heads, N, d)
    expected = torch.empty_like(q)
    for h, tau in enumerate([0.5, 2.0]):
        q_hat = q[h] / q[h].norm(dim=0)
        k_hat = k[h] / k[h].norm(dim=0)
        channel_weights = (tau * q_hat.T @ k_hat).softmax(dim=1)  # (d, d), rows sum to 1
        expected[h] = (channel_weights @ v[h].T).T
    got = mechanism(x, grid, query, key_value)[0]
    assert torch.allclose(got, merged(expected[None])[0], atol=1e-5)


@pytest.mark.parametrize("grid", [(7, 10), (5, 3), (1, 6)])
@pytest.mark.parametrize("name", [*SETTINGS, "spatial_reduction_pooled"])
def test_every_mechanism_trains_on_any_grid(name: str, grid: tuple[int, int]) -> None:
    """A smoke test over mechanisms and grids, on purpose (each mechanism's values are checked
    against its closed form above): shapes, finite gradients, and batch items that do not
    mix."""
    torch.manual_seed(9)
    settings = POOLED if name == "spatial_reduction_pooled" else SETTINGS[name]
    mechanism = build(name.removesuffix("_pooled"), **settings)
    query, key_value = projections()
    x = tokens(grid, batch=3).requires_grad_()
    out = mechanism(x, grid, query, key_value)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().sum().backward()
    for param in [x, *query.parameters(), *key_value.parameters(), *mechanism.parameters()]:
        assert param.grad is not None and torch.isfinite(param.grad).all()
    # Items of a batch do not mix.
    alone = mechanism(x[1:2], grid, query, key_value)
    assert torch.allclose(alone, out[1:2], atol=1e-5)


@pytest.mark.parametrize("name", ["global", "linear"])
def test_masked_context_tokens_change_nothing(name: str) -> None:
    torch.manual_seed(10)
    mechanism, (query, key_value) = build(name), projections()
    grid = (3, 4)
    x, context = tokens(grid), torch.randn(2, 5, CHANNELS)
    mask = torch.tensor([[True, True, False, True, False], [True, False, False, False, False]])
    out = mechanism(x, grid, query, key_value, context=context, context_mask=mask)
    changed = context.clone()
    changed[~mask] = 100.0
    again = mechanism(x, grid, query, key_value, context=changed, context_mask=mask)
    assert torch.allclose(out, again, atol=1e-6)
    first = mechanism(x[:1], grid, query, key_value, context=context[:1, mask[0]])
    assert torch.allclose(out[:1], first, atol=1e-6)


@pytest.mark.parametrize(("grid", "window"), [((8, 8), 4), ((7, 10), 4), ((5, 9), 3)])
def test_shifted_window_is_plain_window_attention_on_even_blocks_and_shifted_on_odd(
    grid: tuple[int, int], window: int
) -> None:
    """Swin's alternation as wiring: with the same weights, the shifted_window mechanism of an
    even block (0, 2) gives exactly plain window attention's output, that of an odd block (1, 3)
    the same shifted output at every odd index and another than plain windows. Fails if the
    shift is taken from the wrong parity, shifts every block, or none."""
    torch.manual_seed(3)
    plain, (query, key_value) = build("window", window_size=window), projections()
    x = tokens(grid)
    with torch.no_grad():
        expected = plain(x, grid, query, key_value)
        outputs = {}
        for index in range(4):
            mechanism = build("shifted_window", block_index=index, window_size=window)
            mechanism.load_state_dict(plain.state_dict())
            outputs[index] = mechanism(x, grid, query, key_value)
    assert torch.equal(outputs[0], expected) and torch.equal(outputs[2], expected)
    assert torch.equal(outputs[1], outputs[3])
    assert not torch.allclose(outputs[1], expected, atol=1e-3)


def test_a_window_larger_than_the_map_is_clamped_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mechanism, (query, key_value) = build("shifted_window", window_size=7), projections()
    logger = get_logger()
    # The run's logger stops propagating to the root (where caplog listens) once set up.
    handler = None if logger.propagate else caplog.handler
    if handler is not None:
        logger.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            mechanism(tokens((5, 3)), (5, 3), query, key_value)
            mechanism(tokens((4, 6)), (4, 6), query, key_value)
    finally:
        if handler is not None:
            logger.removeHandler(handler)
    assert [r.getMessage() for r in caplog.records] == [
        "shifted_window WINDOW_SIZE 7 exceeds the 5x3 token grid: windows of 5x3 there "
        "(logged once)"
    ]
    assert mechanism.windows((5, 3)) == ((5, 3), (0, 0))  # covers the map: nothing to shift
    assert mechanism.windows((5, 12)) == ((5, 7), (0, 3))  # shifted where the window is smaller


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("global", {}, "NUM_HEADS 3 does not divide the 8 channels"),
        ("window", {"window_size": 0}, "window WINDOW_SIZE must be at least 1, got 0"),
        ("shifted_window", {"window_size": 1}, "shifted_window WINDOW_SIZE must be at least 2"),
        ("spatial_reduction", {"ratio": 0, "pool_size": None}, "RATIO must be at least 1"),
        ("spatial_reduction", {"ratio": None, "pool_size": 0}, "POOL_SIZE must be at least 1"),
        ("spatial_reduction", {"ratio": 2, "pool_size": 7}, "set exactly one of RATIO"),
        ("spatial_reduction", {"ratio": None, "pool_size": None}, "set exactly one of RATIO"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(
    name: str, settings: dict[str, int | None], message: str
) -> None:
    num_heads = 3 if name == "global" else HEADS
    with pytest.raises(ValueError, match=message):
        factory(name, settings)(channels=CHANNELS, num_heads=num_heads, block_index=1)


def test_tokens_that_do_not_fill_the_grid_are_refused() -> None:
    with pytest.raises(ValueError, match="12 tokens do not lie on a 3x5 grid"):
        build("global")(tokens((3, 4)), (3, 5), *projections())


def factory(name: str, settings: dict[str, int | None]) -> PartFactory:
    node = {key.upper(): value for key, value in settings.items()}
    return PartFactory(ATTENTIONS, CfgNode({"NAME": name, name.upper(): node}), None)


def cross_attention_block(name: str, settings: dict[str, int | None]) -> nn.Module:
    return BLOCKS.get("cross_attention")(
        input_shapes={"x": ShapeSpec(CHANNELS, 4)},
        num_heads=HEADS,
        attention=factory(name, settings),
    )


@pytest.mark.parametrize(
    "name", ["window", "shifted_window", "spatial_reduction", "cross_covariance"]
)
def test_cross_attention_refuses_mechanisms_whose_keys_must_be_the_grid(name: str) -> None:
    with pytest.raises(
        ConfigError,
        match=rf"MODEL.BLOCK.CROSS_ATTENTION.ATTENTION.NAME '{name}': the keys of cross_attention "
        "are segment tokens",
    ):
        cross_attention_block(name, SETTINGS[name])
    with pytest.raises(ValueError, match="this attention mechanism"):
        build(name, **SETTINGS[name])(
            tokens((2, 2)), (2, 2), *projections(), context=torch.randn(2, 3, CHANNELS)
        )


# The parameter names of the cross-attention block before mechanisms took tokens: checkpoints
# saved then must load now (the checkpoint loader refuses any key that differs).
CROSS_ATTENTION_KEYS = [
    f"attention.x.{module}.{param}"
    for module in ["norm_query", "norm_context", "query", "key_value", "out"]
    for param in ["weight", "bias"]
]


def test_cross_attention_with_global_attention_is_unchanged() -> None:
    """Same parameters, initialised in the same order from the same seed, same names, and the
    same output as the computation the block made before, written out here."""
    torch.manual_seed(11)
    block = cross_attention_block("global", {})
    assert list(block.state_dict()) == CROSS_ATTENTION_KEYS
    torch.manual_seed(11)
    # The modules the block created before, in its order (only the Linear layers draw numbers).
    reference = [nn.LayerNorm(CHANNELS), nn.LayerNorm(CHANNELS)]
    reference += [nn.Linear(CHANNELS, CHANNELS), nn.Linear(CHANNELS, 2 * CHANNELS)]
    reference += [nn.Linear(CHANNELS, CHANNELS)]
    nn.init.zeros_(reference[-1].weight)
    nn.init.zeros_(reference[-1].bias)
    for got, expected in zip(
        block.parameters(), nn.ModuleList(reference).parameters(), strict=True
    ):
        assert torch.equal(got, expected)
    layer: SegmentCrossAttention = block.attention["x"]
    with torch.no_grad():  # the output projection starts at zero; make it count
        layer.out.weight.normal_()
        layer.out.bias.normal_()
    grid = (5, 7)
    x, context = tokens(grid), torch.randn(2, 4, CHANNELS)
    mask = torch.tensor([[True, True, False, True], [True, True, True, True]])
    out = layer(x, grid, context, mask)

    q = layer.query(F.layer_norm(x, (CHANNELS,), layer.norm_query.weight, layer.norm_query.bias))
    kv = layer.key_value(
        F.layer_norm(context, (CHANNELS,), layer.norm_context.weight, layer.norm_context.bias)
    )
    k, v = kv.chunk(2, dim=-1)
    bias = torch.zeros(2, 1, 1, 4).masked_fill(~mask[:, None, None], float("-inf"))
    attended = merged(softmax_attention(heads(q), heads(k), heads(v), bias))
    expected = x + layer.out(attended)
    assert torch.allclose(out, expected, atol=1e-6)


def test_cross_attention_runs_linear_attention() -> None:
    """The block with linear attention against its closed form written out here: x + out(ρ_q(q)
    (ρ_k(k)ᵀ v)), q from the normalised map tokens, k and v from the normalised context,
    ρ_k a softmax over the real context tokens only. (The output projection starts at zero,
    where any attention gives x: it is drawn at random first.) Fails for the softmaxes over
    the other axes, a masked token counted, or the context taken without its LayerNorm."""
    torch.manual_seed(12)
    layer = cross_attention_block("linear", {}).attention["x"]
    with torch.no_grad():
        layer.out.weight.normal_()
        layer.out.bias.normal_()
    x, context = tokens((3, 4)), torch.randn(2, 4, CHANNELS)
    mask = torch.tensor([[True, False, True, True], [True, True, True, True]])
    out = layer(x, (3, 4), context, mask)

    def normed(t: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        return F.layer_norm(t, (CHANNELS,), norm.weight, norm.bias)

    q = heads(layer.query(normed(x, layer.norm_query)))
    k, v = (heads(t) for t in layer.key_value(normed(context, layer.norm_context)).chunk(2, -1))
    expected = torch.empty_like(q)
    for b in range(2):
        real = mask[b]
        k_soft = k[b][:, real].softmax(dim=1)  # (heads, real K, d): each feature over tokens
        summary = k_soft.transpose(1, 2) @ v[b][:, real]  # (heads, d, d)
        expected[b] = q[b].softmax(dim=-1) @ summary
    torch.testing.assert_close(out, x + layer.out(merged(expected)), rtol=0, atol=1e-5)


def test_the_mechanism_is_chosen_by_name_in_the_config() -> None:
    from code.config import load_config
    from code.models.build import build_model

    config = "configs/01_dinogaze_spade/cpu_osie/cross_attention.yaml"
    key = "MODEL.BLOCK.CROSS_ATTENTION.ATTENTION"
    block = build_model(load_config(config, [f"{key}.NAME", "linear"])).block
    assert all(isinstance(a.attention, ATTENTIONS.get("linear")) for a in block.attention.values())
    window = load_config(config, [f"{key}.NAME", "window", f"{key}.WINDOW.WINDOW_SIZE", "4"])
    with pytest.raises(ConfigError, match=f"{key}.NAME 'window': the keys of cross_attention"):
        build_model(window)
