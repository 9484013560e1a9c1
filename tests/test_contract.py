"""The codec block and the contract facts, against rows computed by hand from CONTRACT.md."""

from pathlib import Path

import numpy as np
import pytest

from frgb.contract import (
    CODEC_BLIND, CODEC_BLOCK_LAYOUT, ENCODER_VOCAB, FEATURES, ContractError, canonical_encoder, codec_block,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "contract"


@pytest.mark.parametrize(
    "encoder, preset, crf, expected",
    [
        ("libx264", "medium", 23, [1, 0, 0, 0, 0, 0, 5 / 9, 23 / 63]),
        ("x265", "veryslow", 51, [0, 1, 0, 0, 0, 0, 8 / 9, 51 / 63]),
        ("libsvtav1", "13", 63, [0, 0, 1, 0, 0, 0, 9 / 9, 63 / 63]),  # numeric presets map to min(n, 9)
        ("libsvtav1", 4, 35, [0, 0, 1, 0, 0, 0, 4 / 9, 35 / 63]),
        ("VVC", "slower", 37, [0, 0, 0, 1, 0, 0, 8 / 9, 37 / 63]),  # QP in the crf field
        (" vp9 ", "realtime", 40, [0, 0, 0, 0, 1, 0, 0 / 9, 40 / 63]),
        ("libaom-av1", "6", 30, [0, 0, 0, 0, 0, 1, 5 / 9, 30 / 63]),  # outside the vocabulary
        ("h264_nvenc", "p4", 20, [0, 0, 0, 0, 0, 1, 5 / 9, 20 / 63]),
        ("libx264", "turbo", 18, [1, 0, 0, 0, 0, 0, 5 / 9, 18 / 63]),  # preset not in table: 5
        ("libx264", "slow", 60, [1, 0, 0, 0, 0, 0, 6 / 9, 51 / 63]),  # x264 CRF clipped to 51
    ],
)
def test_codec_block_matches_hand_computed_rows(encoder, preset, crf, expected):
    assert codec_block(encoder, preset, crf) == pytest.approx(expected, abs=0)


@pytest.mark.parametrize("crf", [-1, 64, float("nan"), "abc", None, True])
def test_unusable_crf_is_refused_with_its_reason(crf):
    with pytest.raises(ContractError, match="crf"):
        codec_block("libsvtav1", "8", crf)


def test_layout_and_blind_vector_follow_the_contract():
    assert FEATURES == ("adm2", "vif_scale0", "vif_scale1", "vif_scale2", "vif_scale3", "motion2")
    assert ENCODER_VOCAB == ("libx264", "libx265", "libsvtav1", "libvvenc", "libvpx-vp9", "unknown")
    assert len(CODEC_BLOCK_LAYOUT) == 8 and CODEC_BLOCK_LAYOUT[-2:] == ("preset_norm", "crf_norm")
    assert CODEC_BLIND == (0, 0, 0, 0, 0, 1, 0.5, 0.5)
    assert canonical_encoder("HEVC") == "libx265" and canonical_encoder("") == "unknown"


def test_shipped_allowlist_is_the_contracts_copy():
    if not SHARED.is_dir():
        pytest.skip("shared/contract not beside the checkout")
    from importlib import resources

    ours = resources.files("frgb").joinpath("libvmaf_op_allowlist.txt").read_text()
    assert ours == (SHARED / "libvmaf_op_allowlist.txt").read_text()


def test_codec_blocks_are_one_hot_in_unit_range(small_corpus):
    block = small_corpus.codec
    assert np.all(block[:, :6].sum(axis=1) == 1)
    assert np.all((block >= 0) & (block <= 1))


def test_fork_v2_layout_is_the_forks_production_sidecar():
    import json

    from frgb.contract import CARD, FORK_V2, LAYOUTS, layout_for_vocab, layout_for_width

    anchor = SHARED.parent / "anchors" / "fr_regressor_v2.json"
    if not anchor.is_file():
        pytest.skip("shared/anchors not beside the checkout")
    sidecar = json.loads(anchor.read_text())
    assert list(FORK_V2.encoder_vocab) == sidecar["encoder_vocab"]
    assert list(FORK_V2.codec_block_layout) == sidecar["codec_block_layout"]
    assert FORK_V2.vocab_version == sidecar["encoder_vocab_version"] == 2
    assert [n for n, _ in FORK_V2.input_specs("two")] == sidecar["input_names"]
    assert layout_for_vocab(sidecar["encoder_vocab"]) is FORK_V2 and layout_for_width(14) is FORK_V2
    assert CARD.codec_block_layout == CODEC_BLOCK_LAYOUT and CARD.codec_blind == CODEC_BLIND
    assert set(LAYOUTS) == {"card", "fork-v2"}


@pytest.mark.parametrize(
    "encoder, preset, crf, expected",
    [
        ("libx264", "medium", 23, [1] + [0] * 11 + [5 / 9, 23 / 63]),
        ("h264_nvenc", "p4", 30, [0] * 5 + [1] + [0] * 6 + [5 / 9, 30 / 63]),
        ("av1_qsv", "veryslow", 40, [0] * 10 + [1, 0] + [8 / 9, 40 / 63]),
        ("libaom-av1", "6", 30, [0] * 11 + [1] + [5 / 9, 30 / 63]),  # outside the vocabulary
        ("HEVC", "slow", 60, [0, 1] + [0] * 10 + [6 / 9, 51 / 63]),  # alias; x265 CRF clipped to 51
    ],
)
def test_fork_v2_codec_block_matches_hand_computed_rows(encoder, preset, crf, expected):
    from frgb.contract import FORK_V2

    assert codec_block(encoder, preset, crf, FORK_V2) == pytest.approx(expected, abs=0)


def test_the_guard_keeps_trained_slots_and_blinds_every_other_block():
    import numpy as np

    from frgb.contract import FORK_V2, guard_codec

    trusted = (0, 1, 2, 3, 4)
    x264 = [1] + [0] * 11 + [0.5, 0.3]
    others = [[0] * 5 + [1] + [0] * 6 + [0.2, 0.9], [0] * 11 + [1, 0, 0], [0] * 14]
    out = guard_codec(np.array([x264, *others]), trusted, FORK_V2)
    np.testing.assert_array_equal(out[0], np.float32(x264))
    assert (out[1:] == FORK_V2.codec_blind).all()
