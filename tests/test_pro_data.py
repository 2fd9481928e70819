"""Readers for MUSDB18 stem.mp4 and accompaniment-only folders, the mixing engine, and --init from a bundle."""
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from stream_dc.evaluation.datasets import (
    DatasetError,
    TrackRef,
    list_tracks,
    select,
    split_groups,
    split_names,
)
from tests.synthetic import accompaniment, voice

FFMPEG = shutil.which("ffmpeg") and shutil.which("ffprobe")


def write_stem_mp4(path, stems: dict, rate: int):
    """A MUSDB18-layout file: streams mixture, drums, bass, other, vocals (ALAC, lossless, so values are exact)."""
    folder = path.parent
    inputs = []
    for name in ("mixture", "drums", "bass", "other", "vocals"):
        wav = folder / f"{path.name}.{name}.wav"
        sf.write(wav, stems[name], rate, subtype="PCM_16")
        inputs += ["-i", str(wav)]
    maps = sum((["-map", f"{i}:a"] for i in range(5)), [])
    subprocess.run(["ffmpeg", "-v", "error", "-y", *inputs, *maps, "-c:a", "alac", "-f", "mp4", str(path)], check=True)


@pytest.mark.skipif(not FFMPEG, reason="writing and reading .stem.mp4 files needs ffmpeg")
def test_musdb_stem_mp4_reads_vocals_and_the_sum_of_the_other_stems(tmp_path):
    rate, rng = 44100, np.random.default_rng(0)
    stems = {name: np.round(rng.uniform(-0.2, 0.2, (rate // 2, 2)) * 32767) / 32768
             for name in ("drums", "bass", "other", "vocals")}
    stems["mixture"] = np.clip(sum(stems.values()), -1, 0.999)
    (tmp_path / "train").mkdir()
    write_stem_mp4(tmp_path / "train" / "Some Artist - A Song.stem.mp4", stems, rate)
    write_stem_mp4(tmp_path / "train" / "Some Artist - Another.stem.mp4", stems, rate)
    write_stem_mp4(tmp_path / "train" / "Other Band - Third.stem.mp4", stems, rate)
    refs = list_tracks(tmp_path, "musdb")
    assert [(r.name, r.group) for r in refs] == [("Other Band - Third", "Other Band"),
                                                  ("Some Artist - A Song", "Some Artist"),
                                                  ("Some Artist - Another", "Some Artist")]
    track = refs[1].load()
    assert track.sample_rate == rate and track.voice.shape == (rate // 2, 2)
    np.testing.assert_allclose(track.voice, stems["vocals"], atol=1e-6)
    np.testing.assert_allclose(track.accompaniment, stems["drums"] + stems["bass"] + stems["other"], atol=1e-5)
    # an artist's songs stay on one side of a split, and a song's name holds out its artist
    training, held = split_groups(refs, ["Some Artist - Another"])
    assert [r.name for r in held] == ["Some Artist - A Song", "Some Artist - Another"]
    assert [r.name for r in training] == ["Other Band - Third"]
    assert [r.name for r in select(refs, ["Other Band"])] == ["Other Band - Third"]
    with pytest.raises(DatasetError, match="Nobody"):
        select(refs, ["Nobody"])


def test_names_with_commas_can_be_given():
    """A comma-separated list keeps a known name that holds commas whole; other pieces stay apart."""
    refs = [TrackRef("Jokers, Jacks & Kings - Sea Of Leaves", "Jokers, Jacks & Kings", "musdb"),
            TrackRef("Triviul - Dorothy", "Triviul", "musdb")]
    assert split_names("Triviul,Jokers, Jacks & Kings", refs) == ["Triviul", "Jokers, Jacks & Kings"]
    assert split_names("Jokers, Jacks & Kings - Sea Of Leaves,,Triviul", refs) == [
        "Jokers, Jacks & Kings - Sea Of Leaves", "Triviul"]
    assert split_names("Jokers,Triviul", refs) == ["Jokers", "Triviul"]  # not a known name: left for select to name
    with pytest.raises(DatasetError, match="Jokers"):
        select(refs, split_names("Jokers,Triviul", refs))


def test_instrumental_folder_is_accompaniment_only_grouped_by_piece(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("000_rock__piece_a", "001_rock__piece_a", "002_pop__piece_b", "intro"):
        sf.write(tmp_path / f"{name}.flac", accompaniment(1.0, 22050, rng), 22050)
    refs = list_tracks(tmp_path, "instrumental")
    assert [r.group for r in refs] == ["rock__piece_a", "rock__piece_a", "pop__piece_b", "intro"]
    track = refs[0].load()
    assert track.sample_rate == 22050 and not track.voice.any() and track.accompaniment.any()



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

# -- the mixing engine (needs the training extra: pedalboard) -------------------------------------------------
def clips_for_mixing():
    from training.data import Stems

    rng = np.random.default_rng(2)
    clips = [Stems(f"song{i}", f"musdb:artist{i % 3}", voice(2.0, 16000, rng), accompaniment(2.0, 16000, rng), "musdb")
             for i in range(6)]
    clips += [Stems(f"inst{i}", f"instrumental:piece{i}", np.zeros(0, np.float32), accompaniment(5.0, 16000, rng),
                    "instrumental") for i in range(3)]
    return clips


def test_remixes_pair_different_groups_and_are_reproducible():
    pytest.importorskip("pedalboard")
    from training.mixing import MixingConfig, draw_remixes, render

    clips = clips_for_mixing()
    config = MixingConfig(snr_db=(-8, 3), level_dbfs=(-30, -12), augment=True, no_voice=0.1,
                          voice_weights={"musdb": 1.0}, accompaniment_weights={"instrumental": 0.6, "musdb": 0.4})
    specs = draw_remixes(clips, 200, config, np.random.default_rng(7))
    assert specs == draw_remixes(clips, 200, config, np.random.default_rng(7))
    assert all(clips[s.voice].has_voice and clips[s.voice].group != clips[s.accompaniment].group for s in specs)
    sources = [clips[s.accompaniment].source for s in specs]
    assert 0.45 < sources.count("instrumental") / len(specs) < 0.75
    first, again = render(specs[0], clips, config), render(specs[0], clips, config)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    levels, ratios, silent = [], [], 0
    for spec in specs[:40]:
        v, a = render(spec, clips, config)
        assert v.shape == a.shape == clips[spec.voice].voice.shape
        levels.append(10 * np.log10(np.mean((v + a) ** 2)))
        if np.any(v):
            ratios.append(10 * np.log10(np.mean(v ** 2) / np.mean(a ** 2)))
        else:
            silent += 1
    assert -30.01 < min(levels) and max(levels) < -11.99
    assert -8.01 < min(ratios) and max(ratios) < 3.01 and np.ptp(ratios) > 4


def test_voice_pitch_shift_moves_the_pitch_and_keeps_the_length():
    pytest.importorskip("pedalboard")
    from training.mixing import pitch_shifted

    tone = np.sin(2 * np.pi * 220.0 * np.arange(16000) / 16000).astype(np.float32)
    shifted = pitch_shifted(tone, 3.0)
    assert len(shifted) == len(tone)
    spectrum = np.abs(np.fft.rfft(shifted[2000:14000] * np.hanning(12000)))
    assert np.argmax(spectrum) * 16000 / 12000 == pytest.approx(220.0 * 2 ** (3 / 12), abs=3.0)


def test_voice_pitch_shifts_about_half_the_voices_reproducibly():
    pytest.importorskip("pedalboard")
    from training.mixing import MixingConfig, draw_remixes, render

    clips = clips_for_mixing()
    plain = MixingConfig(snr_db=(-8, 3), augment=True, voice_weights={"musdb": 1.0})
    pitched = MixingConfig(snr_db=(-8, 3), augment=True, voice_weights={"musdb": 1.0}, voice_pitch=4.0)
    specs = draw_remixes(clips, 12, pitched, np.random.default_rng(3))
    changed = 0
    for spec in specs:
        v0, _ = render(spec, clips, plain)
        v1, _ = render(spec, clips, pitched)
        np.testing.assert_array_equal(v1, render(spec, clips, pitched)[0])
        assert v1.shape == v0.shape
        changed += not np.allclose(v0, v1, atol=1e-4)
    assert 0 < changed < len(specs)


def test_default_mixing_is_the_papers_0_db_remix():
    from training.mixing import MixingConfig, RemixSpec, render

    clips = clips_for_mixing()
    v, a = render(RemixSpec(voice=0, accompaniment=7, offset=1234, seed=5), clips, MixingConfig())
    np.testing.assert_array_equal(v, clips[0].voice)
    assert np.mean(v ** 2) == pytest.approx(np.mean(a ** 2), rel=1e-4)
    expected = clips[7].accompaniment[1234:1234 + len(v)]
    np.testing.assert_allclose(a / np.sqrt(np.mean(a ** 2)), expected / np.sqrt(np.mean(expected ** 2)), atol=1e-5)


def test_magnitude_bin_weights_follow_the_mel_magnitude_of_active_bins_only():
    from stream_dc.features import FeatureConfig, LogMel
    from training.data import make_chunks, mix_features

    log_mel = LogMel(FeatureConfig())
    rng = np.random.default_rng(0)
    mix = mix_features(voice(2.0, 16000, rng), accompaniment(2.0, 16000, rng), log_mel)
    active = mix.weight > 0
    assert active.any() and not active.all()
    weights = make_chunks([mix], 100, log_mel, weighting="magnitude").weight
    flat = np.concatenate(list(weights))[:len(mix.log_mel)]
    np.testing.assert_array_equal(flat > 0, active)
    assert flat[active].mean() == pytest.approx(1.0, rel=1e-4)
    ratio = flat[active] / np.exp(mix.log_mel[active])  # one constant: the weight is proportional to the magnitude
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)
    unweighted = make_chunks([mix], 100, log_mel).weight
    np.testing.assert_array_equal(np.concatenate(list(unweighted))[:len(mix.log_mel)], mix.weight)
    with pytest.raises(ValueError, match="bin weights"):
        make_chunks([mix], 100, log_mel, weighting="loudness")


def test_voice_share_is_the_voice_part_of_the_mixture_magnitude():
    from stream_dc.features import FeatureConfig, LogMel
    from training.data import make_chunks, mix_features

    log_mel = LogMel(FeatureConfig())
    rng = np.random.default_rng(1)
    v, a = voice(1.0, 16000, rng), accompaniment(1.0, 16000, rng)
    only_voice = mix_features(v, np.zeros_like(v), log_mel)
    only_accompaniment = mix_features(np.zeros_like(a), a, log_mel)
    active = only_voice.weight > 0
    np.testing.assert_allclose(only_voice.voice_share[active].astype(np.float32), 1.0, atol=2e-3)
    assert np.all(only_accompaniment.voice_share == 0)
    mixed = mix_features(v, a, log_mel)
    assert mixed.voice_share.dtype == np.float16
    share = mixed.voice_share.astype(np.float32)
    assert share.min() >= 0
    voiced = mixed.voice & (mixed.weight > 0)
    assert share[voiced].mean() > share[~mixed.voice & (mixed.weight > 0)].mean()  # the binary target agrees
    chunks = make_chunks([mixed], 100, log_mel)
    np.testing.assert_array_equal(np.concatenate(list(chunks.voice_share))[:len(share)], mixed.voice_share)


def test_phase_sensitive_share_is_the_voice_along_the_mixture_truncated_to_one():
    """The mask head's target: 1 where the mixture is the voice alone, 0 where it has none, 0 (truncated) where
    the voice is cancelled by an accompaniment in opposite phase, and never above the magnitude share."""
    from stream_dc.features import FeatureConfig, LogMel
    from training.data import make_chunks, mix_features

    log_mel = LogMel(FeatureConfig())
    rng = np.random.default_rng(2)
    v, a = voice(1.0, 16000, rng), accompaniment(1.0, 16000, rng)
    only_voice = mix_features(v, np.zeros_like(v), log_mel)
    active = only_voice.weight > 0
    np.testing.assert_allclose(only_voice.voice_psa[active].astype(np.float32), 1.0, atol=2e-3)
    assert np.all(mix_features(np.zeros_like(a), a, log_mel).voice_psa == 0)
    opposed = mix_features(v, -2.0 * v, log_mel)  # the mixture is -v: the voice points against it
    assert np.all(opposed.voice_psa[opposed.weight > 0] == 0)
    mixed = mix_features(v, a, log_mel)
    assert mixed.voice_psa.dtype == np.float16
    psa, share = mixed.voice_psa.astype(np.float32), mixed.voice_share.astype(np.float32)
    assert psa.min() >= 0 and psa.max() <= 1
    assert np.all(psa <= np.minimum(share, 1.0) + 2e-3)  # |S| cos <= |S|
    voiced = mixed.voice & (mixed.weight > 0)
    assert psa[voiced].mean() > 0.5 > psa[~mixed.voice & (mixed.weight > 0)].mean()
    chunks = make_chunks([mixed], 100, log_mel)
    np.testing.assert_array_equal(np.concatenate(list(chunks.voice_psa))[:len(psa)], mixed.voice_psa)
