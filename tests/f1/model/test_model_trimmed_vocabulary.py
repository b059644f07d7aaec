"""``language.kept_ids``: a vocabulary trimmed to the ids a task family's instructions use."""

from __future__ import annotations

import pytest
import torch

from f1.errors import ConfigError
from f1.model import F1Config, F1Policy, LanguageConfig, preset
from f1.model.language import TrimmedTokenizer, build_tokenizer, trim_vocabulary

TEXTS = ["put the red square in the blue bin", "put the green circle in the red bin"]


def test_trimming_keeps_the_ids_the_texts_use_and_maps_others_to_one_unknown_row():
    full = preset("tiny").language
    trimmed = trim_vocabulary(full, TEXTS)
    assert trimmed.vocab_size == len(trimmed.kept_ids) + 2
    full_ids, full_lengths = build_tokenizer(full)(TEXTS)
    assert set(trimmed.kept_ids) == set(full_ids.flatten().tolist()) - {0}
    tokenizer = build_tokenizer(trimmed)
    assert isinstance(tokenizer, TrimmedTokenizer)
    ids, lengths = tokenizer(TEXTS)
    assert torch.equal(lengths, full_lengths)
    assert torch.equal(ids == 0, full_ids == 0)  # padding stays padding
    # distinct kept ids stay distinct, in the order of kept_ids
    for row_full, row in zip(full_ids, ids):
        for a, b in zip(row_full.tolist(), row.tolist()):
            assert b == (0 if a == 0 else trimmed.kept_ids.index(a) + 1)
    # a word never seen shares the unknown row
    unseen, _ = tokenizer(["put the purple triangle in the blue bin"])
    assert (unseen == trimmed.vocab_size - 1).any()
    assert int(unseen.max()) < trimmed.vocab_size


def test_a_trimmed_policy_is_small_round_trips_and_plans(tmp_path, observation_factory):
    config = preset("tiny", mode="no_gen")
    trimmed = config.replace(language=trim_vocabulary(config.language, ["put the red cube in the bowl"]))
    torch.manual_seed(0)
    policy = F1Policy(trimmed)
    rows = policy.model.understanding.language.embed_tokens.num_embeddings
    assert rows == trimmed.language.vocab_size < 20
    policy.save(tmp_path / "policy")
    again = F1Policy.load(tmp_path / "policy")
    assert again.config.language.kept_ids == trimmed.language.kept_ids
    assert F1Config.from_json(trimmed.to_json()) == trimmed
    observation = {k: v for k, v in observation_factory().items() if k != "history"}
    plan = again.plan(observation, seed=0)
    torch.testing.assert_close(plan.actions, policy.plan(observation, seed=0).actions)


@pytest.mark.parametrize(
    ("kept", "vocab", "message"),
    [
        ([], 2, "non-empty list of positive int"),
        ([0, 5], 4, "non-empty list of positive int"),
        ([3, True], 4, "non-empty list of positive int"),
        ([3, 3], 4, "distinct ids"),
        ("345", 5, "expected a list of token ids"),
        ([3, 4], 49408, "a trimmed vocabulary of 2 kept ids has 4 rows"),
    ],
)
def test_config_refuses_bad_kept_ids(kept, vocab, message):
    with pytest.raises(ConfigError, match=message):
        LanguageConfig(kept_ids=kept, vocab_size=vocab)


def test_kept_ids_beyond_the_tokenizer_and_retrimming_are_refused():
    with pytest.raises(ConfigError, match="below the tokenizer's 49408"):
        build_tokenizer(LanguageConfig(kept_ids=(5, 60000), vocab_size=4, max_length=16))
    trimmed = trim_vocabulary(preset("tiny").language, TEXTS)
    with pytest.raises(ConfigError, match="already trimmed"):
        trim_vocabulary(trimmed, TEXTS)
    with pytest.raises(ConfigError, match="at least one instruction"):
        trim_vocabulary(preset("tiny").language, [])
