"""Vision tower (timm, offline) and language tokens (open_clip offline by default, Gemma when supplied)."""

from __future__ import annotations

import pytest
import torch

from f1.model import InputError, LanguageConfig, VisionConfig, preset
from f1.model.language import GemmaTokenizer, LanguageEmbedding, OpenClipTokenizer, build_tokenizer
from f1.model.understanding import UnderstandingEncoder
from f1.model.vision import VisionTower


def test_vision_tower_returns_patch_tokens_without_prefix_tokens() -> None:
    tower = VisionTower(preset("tiny").vision)
    tokens = tower(torch.rand(3, 3, 64, 64))
    assert tokens.shape == (3, 64, 64)  # (64 / 8)^2 patches of width 64, class token dropped
    assert tower.num_tokens == 64


def test_vision_tower_rejects_other_image_sizes() -> None:
    tower = VisionTower(preset("tiny").vision)
    with pytest.raises(InputError, match=r"images: expected \(N, 3, 64, 64\), received \(1, 3, 32, 32\)"):
        tower(torch.rand(1, 3, 32, 32))


def test_siglip_so400m_is_built_offline_on_the_meta_device() -> None:
    with torch.device("meta"):
        tower = VisionTower(VisionConfig())
    assert tower.num_tokens == 256
    assert tower.width == 1152


def test_any_number_of_cameras_gives_one_block_of_tokens_per_camera() -> None:
    config = preset("tiny", cameras=("front", "wrist", "top"))
    encoder = UnderstandingEncoder(config)
    ids, lengths = OpenClipTokenizer(16)(["stack the cubes"] * 2)
    tokens, valid = encoder(torch.rand(2, 3, 3, 64, 64), ids, lengths)
    assert tokens.shape == (2, 3 * 64 + 16, 64)
    assert valid.tolist() == [3 * 64 + int(lengths[0])] * 2


def test_image_tokens_enter_unscaled_and_language_embeddings_are_scaled_by_sqrt_width() -> None:
    # pi0 (openpi, LeRobot) and the published F1: the projector's output is the image token, while the
    # language embedding is multiplied by sqrt(width) (Gemma's convention).
    torch.manual_seed(0)
    encoder = UnderstandingEncoder(preset("tiny", cameras=("front", "wrist"))).eval()
    images = torch.rand(2, 2, 3, 64, 64)
    ids, lengths = OpenClipTokenizer(16)(["stack the cubes", "go"])
    tokens, _ = encoder(images, ids, lengths)
    patches = encoder.projector(encoder.vision(images.flatten(0, 1))).reshape(2, 2 * 64, 64)
    assert torch.equal(tokens[:, : 2 * 64], patches)
    language = encoder.language.embed_tokens(ids) * 64**0.5
    assert torch.equal(tokens[:, 2 * 64 :], language)


def test_open_clip_tokenizer_works_offline_and_right_pads() -> None:
    ids, lengths = OpenClipTokenizer(max_length=8)(["pick up the red cube", "go"])
    assert ids.shape == (2, 8)
    assert lengths.tolist()[1] == 3  # <start> go <end>
    assert (ids[1, 3:] == 0).all()


class _WordTokenizer:
    """A stand-in for a user's Gemma tokenizer: one id per word."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [10 + len(word) for word in text.split()]


def test_a_user_supplied_gemma_tokenizer_gets_pi0s_bos_convention() -> None:
    tokenizer = build_tokenizer(
        LanguageConfig(tokenizer="gemma", vocab_size=257152, max_length=6), _WordTokenizer()
    )
    assert isinstance(tokenizer, GemmaTokenizer)
    ids, lengths = tokenizer(["open the drawer"])
    assert ids[0, :4].tolist() == [2, 14, 13, 16]
    assert lengths.tolist() == [4]


def test_gemma_without_a_local_tokenizer_says_what_is_missing() -> None:
    with pytest.raises(ValueError, match="needs a tokenizer object passed to the policy"):
        build_tokenizer(LanguageConfig(tokenizer="gemma", vocab_size=257152))


def test_language_embedding_checks_the_vocabulary() -> None:
    embedding = LanguageEmbedding(vocab_size=10, width=4)
    assert embedding(torch.tensor([[1, 2]])).shape == (1, 2, 4)
    with pytest.raises(InputError, match=r"expected token ids in \[0, 10\)"):
        embedding(torch.tensor([[11]]))


def test_a_conv_stem_replaces_the_patch_projection_with_strided_convolutions():
    from f1.errors import ConfigError
    from f1.model.vision import VisionTower, conv_stem

    config = preset("tiny", vision={"stem": "conv"}).vision
    tower = VisionTower(config)
    assert isinstance(tower.backbone.patch_embed.proj, torch.nn.Sequential)
    tokens = tower(torch.rand(2, 3, 64, 64))
    assert tokens.shape == (2, 64, 64)  # the same tokens as the patch stem: (64 / 8) ** 2 of width 64
    stem = conv_stem(8, 64)
    assert [m.stride for m in stem if isinstance(m, torch.nn.Conv2d)] == [(2, 2)] * 3
    assert stem(torch.rand(1, 3, 64, 64)).shape == (1, 64, 8, 8)
    with pytest.raises(ConfigError, match="power-of-two patch size"):
        VisionConfig(timm_model="vit_tiny_patch16_224", image_size=60, patch_size=6, stem="conv")
    with pytest.raises(ConfigError, match=r"vision\.stem"):
        VisionConfig(stem="resnet")
