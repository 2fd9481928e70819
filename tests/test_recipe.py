"""The training recipe: arguments from a recipe file and the command line add up."""
import numpy as np
import pytest
import soundfile as sf

from tests.synthetic import accompaniment


def test_holdout_repeats_add_up_across_a_recipe_and_the_command_line(tmp_path):
    pytest.importorskip("torch")
    import argparse

    from training import train

    rng = np.random.default_rng(3)
    for name in ("000_rock__a", "001_pop__b", "002_jazz__c", "003_funk__d"):
        sf.write(tmp_path / f"{name}.flac", accompaniment(1.0, 16000, rng), 16000)
    recipe = tmp_path / "recipe.args"
    recipe.write_text(f"--data\ninstrumental:{tmp_path}\n--validation\nfunk__d\n--holdout\nrock__a\n")
    parser = argparse.ArgumentParser(fromfile_prefix_chars="@")
    train.add_arguments(parser)
    training, validation = train.find_clips(parser.parse_args([f"@{recipe}", "--holdout", "pop__b"]))
    assert [r.group for r in training] == ["jazz__c"] and [r.group for r in validation] == ["funk__d"]
    training, _ = train.find_clips(parser.parse_args([f"@{recipe}"]))
    assert [r.group for r in training] == ["pop__b", "jazz__c"]
