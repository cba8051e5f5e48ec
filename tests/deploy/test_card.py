"""The model card: one builder for retraining and export, one writer, one checking reader."""

import json

import numpy as np
import pytest

from stnas.core.errors import CheckpointError
from stnas.deploy.card import model_card, read_card, write_card
from stnas.space.catalog import load_space

SPACE = load_space("digits")


def test_the_card_says_what_the_model_is_then_the_makers_facts_then_its_input():
    arch = SPACE.sample(np.random.default_rng(5))
    prep = {"input_size": 8, "class_names": [str(i) for i in range(10)]}
    card = model_card(arch, prep, top1=0.9, weights="retrained from scratch")
    assert list(card) == ["arch", "arch_json", "space", "space_fingerprint", "madds", "params", "top1", "weights",
                          "preprocessing"]
    assert card["arch"] == str(arch) and SPACE.arch(json.dumps(card["arch_json"])) == arch
    assert (card["space"], card["space_fingerprint"]) == ("digits", SPACE.fingerprint)
    assert (card["madds"], card["params"]) == (SPACE.madds(arch), SPACE.params(arch))
    assert (card["top1"], card["weights"], card["preprocessing"]) == (0.9, "retrained from scratch", prep)


def test_a_card_reads_back_from_its_file_or_folder_and_an_edited_one_is_refused(tmp_path):
    card = model_card(SPACE.sample(np.random.default_rng(1)), None, top1=0.5)
    path = write_card(tmp_path / "model_card.json", card)
    assert read_card(path) == card == read_card(tmp_path)
    assert json.loads(path.read_text())["top1"] == 0.5  # plain JSON for tools without stnas
    path.write_text(path.read_text().replace("0.5", "0.99"))
    with pytest.raises(CheckpointError, match="model card .*model_card.json is damaged"):
        read_card(tmp_path)
