"""Dataset readers: MUSDB18 stem.mp4 files, names that hold commas, and accompaniment-only folders grouped by piece."""
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
from tests.synthetic import accompaniment

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
