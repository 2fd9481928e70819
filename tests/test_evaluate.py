"""Dataset readers and ``stream-dc evaluate`` on small synthetic datasets."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream_dc.evaluation.datasets import DatasetError, list_tracks, split_groups
from tests.synthetic import accompaniment, voice, write_mir1k_like

needs_mir_eval = pytest.mark.skipif(__import__("importlib").util.find_spec("mir_eval") is None,
                                    reason="BSS Eval v3 needs mir_eval")

def write_stems(folder, layout, rate=22050, tracks=2):
    rng = np.random.default_rng(4)
    for t in range(tracks):
        track = folder / f"track{t}"
        track.mkdir(parents=True)
        v = np.stack([voice(3.0, rate, rng)] * 2, axis=1)
        drums, other = (np.stack([accompaniment(3.0, rate, rng)] * 2, axis=1) * 0.5 for _ in range(2))
        sf.write(track / "vocals.wav", v, rate)
        if layout == "musdb":
            sf.write(track / "drums.wav", drums, rate)
            sf.write(track / "other.flac", other, rate)
            sf.write(track / "mixture.wav", v + drums + other, rate)
        else:
            sf.write(track / "accompaniment.wav", drums + other, rate)
            sf.write(track / "mixture.wav", v + drums + other, rate)
    return drums + other


def test_readers(tmp_path):
    write_mir1k_like(tmp_path / "mir1k", ["amy", "bob"], 2, seconds=1.0, suffix=".ogg")
    refs = list_tracks(tmp_path / "mir1k", "mir1k")
    assert [r.group for r in refs] == ["amy", "amy", "bob", "bob"]
    track = refs[0].load()
    assert track.voice.shape[1] == 1 and track.sample_rate == 16000
    train, validation = split_groups(refs, ["bob"])
    assert len(train) == 2 and {r.group for r in validation} == {"bob"}
    with pytest.raises(DatasetError, match="not in the dataset"):
        split_groups(refs, ["carol"])
    last = write_stems(tmp_path / "musdb", "musdb")
    track = list_tracks(tmp_path / "musdb", "musdb")[-1].load()
    assert track.voice.shape[1] == 2 and track.sample_rate == 22050
    np.testing.assert_allclose(track.accompaniment, last, atol=1e-4)  # drums + other, the mixture ignored
    with pytest.raises(DatasetError, match="no stems tracks"):
        list_tracks(tmp_path / "mir1k", "stems")
    with pytest.raises(DatasetError, match="not found"):
        list_tracks(tmp_path / "nowhere", "mir1k")


@needs_mir_eval
@pytest.mark.parametrize("layout", ["mir1k", "stems"])
def test_evaluate_command(tmp_path, layout):
    if layout == "mir1k":
        write_mir1k_like(tmp_path / "data", ["amy", "bob"], 1, seconds=3.0)
        groups = ["--groups", "bob"]
    else:
        write_stems(tmp_path / "data", "stems", tracks=1)
        groups = []
    report = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-m", "stream_dc", "evaluate", "--data", str(tmp_path / "data"),
                             "--dataset", layout, "--systems", "stream-dc,ibm-mel,ibm-stft,repet", "--jobs", "2",
                             "--json", str(report), "--per-clip"] + groups, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "GNSDR" in result.stdout and "ibm-mel" in result.stdout
    data = json.loads(report.read_text())
    summary = data["summary"]
    assert set(summary) == {"stream-dc", "ibm-mel", "ibm-stft", "repet", "mixture"}
    assert len(data["clips"]) == 1
    assert summary["mixture"]["voice"]["gnsdr"] == pytest.approx(0.0)
    # oracle binary masks on this easy material are far better than the mixture, and so is the model
    assert summary["ibm-stft"]["voice"]["gnsdr"] > 5 and summary["ibm-mel"]["voice"]["gnsdr"] > 5
    # stream-dc's scores are those of what the separator gives for the clip, scored directly
    from stream_dc.evaluation.evaluate import bss_scores, usdr
    from stream_dc.separator import Separator

    track = list_tracks(tmp_path / "data", layout)[-1 if layout == "mir1k" else 0].load()
    vocals, accompaniment_out = Separator(device="cpu").separate(track.mixture, track.sample_rate)
    direct = bss_scores([track.voice, track.accompaniment], [vocals, accompaniment_out], track.sample_rate, "v3")
    scored = data["clips"][0]["scores"]["stream-dc"]
    np.testing.assert_allclose(scored["sdr"], direct["sdr"], atol=1e-3)
    assert scored["usdr"][0] == pytest.approx(usdr(track.voice, vocals), abs=1e-4)
    assert summary["stream-dc"]["voice"]["gnsdr"] == pytest.approx(direct["sdr"][0] - data["clips"][0]["scores"][
        "mixture"]["sdr"][0], abs=1e-3)


def test_evaluate_bad_arguments(tmp_path):
    result = subprocess.run([sys.executable, "-m", "stream_dc", "evaluate", "--data", str(tmp_path), "--systems",
                             "magic"], capture_output=True, text=True)
    assert result.returncode == 1 and "unknown systems" in result.stderr
    result = subprocess.run([sys.executable, "-m", "stream_dc", "evaluate", "--data", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "no mir1k tracks" in result.stderr


def test_usdr_and_accompaniment_alone_without_bss_eval(tmp_path):
    """``--bss none`` scores uSDR and the vocals' energy share only (no mir_eval needed); on accompaniment alone
    only the share is scored."""
    write_stems(tmp_path / "data", "stems", tracks=1)
    report = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-m", "stream_dc", "evaluate", "--data", str(tmp_path / "data"),
                             "--dataset", "stems", "--systems", "stream-dc,ibm-stft", "--bss", "none", "--json",
                             str(report)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "uSDR" in result.stdout and "GNSDR" not in result.stdout
    summary = json.loads(report.read_text())["summary"]
    assert summary["ibm-stft"]["voice"]["median_usdr"] > summary["mixture"]["voice"]["median_usdr"] + 5
    assert summary["stream-dc"]["voice"]["median_usdr"] != summary["mixture"]["voice"]["median_usdr"]
    # and it is the uSDR of what the separator gives for the clip
    from stream_dc.evaluation.evaluate import usdr
    from stream_dc.separator import Separator

    track = list_tracks(tmp_path / "data", "stems")[0].load()
    vocals, _ = Separator(device="cpu").separate(track.mixture, track.sample_rate)
    assert summary["stream-dc"]["voice"]["median_usdr"] == pytest.approx(usdr(track.voice, vocals), abs=1e-4)
    assert summary["mixture"]["vocal_share"]["median"] == pytest.approx(1.0)
    # the offline options reach the separator and the oracle's STFT
    from stream_dc.evaluation.evaluate import stft_ibm

    result = subprocess.run([sys.executable, "-m", "stream_dc", "evaluate", "--data", str(tmp_path / "data"),
                             "--dataset", "stems", "--systems", "stream-dc,ibm-stft", "--bss", "none", "--json",
                             str(report), "--synthesis-window", "32", "--no-channel-masks"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    short = json.loads(report.read_text())
    assert short["synthesis_window_ms"] == 32 and short["channel_masks"] is False
    separator = Separator(device="cpu", synthesis_window_ms=32, channel_masks=False)
    vocals, _ = separator.separate(track.mixture, track.sample_rate)
    assert short["summary"]["stream-dc"]["voice"]["median_usdr"] == pytest.approx(usdr(track.voice, vocals), abs=1e-4)
    oracle_short, oracle_long = stft_ibm(track, 4)[0], stft_ibm(track)[0]
    assert short["summary"]["ibm-stft"]["voice"]["median_usdr"] == pytest.approx(usdr(track.voice, oracle_short),
                                                                                 abs=1e-4)
    assert summary["ibm-stft"]["voice"]["median_usdr"] == pytest.approx(usdr(track.voice, oracle_long), abs=1e-4)
    assert usdr(track.voice, oracle_short) != pytest.approx(usdr(track.voice, oracle_long), abs=1e-3)
    rng = np.random.default_rng(9)
    (tmp_path / "alone").mkdir()
    sf.write(tmp_path / "alone" / "000_rock__x.wav", accompaniment(4.0, 16000, rng), 16000)
    result = subprocess.run([sys.executable, "-m", "stream_dc", "evaluate", "--data", str(tmp_path / "alone"),
                             "--dataset", "instrumental", "--systems", "stream-dc", "--bss", "none", "--json",
                             str(report)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    summary = json.loads(report.read_text())["summary"]
    assert 0 <= summary["stream-dc"]["vocal_share"]["median"] < 1
    assert summary["stream-dc"]["empty_vocals"] == []


def test_usdr_definition():
    from stream_dc.evaluation.evaluate import usdr

    reference = np.ones((100, 2))
    assert usdr(reference, reference * 0.9) == pytest.approx(20.0, abs=1e-6)
    assert usdr(reference, np.zeros_like(reference)) == pytest.approx(0.0, abs=1e-6)


@needs_mir_eval
def test_bss_eval_v4_framewise_medians():
    from stream_dc.evaluation.evaluate import bss_scores

    rng = np.random.default_rng(0)
    references = [rng.standard_normal((3 * 8000, 2)).astype(np.float32) for _ in range(2)]
    estimates = [r + 0.1 * rng.standard_normal(r.shape).astype(np.float32) for r in references]
    v4 = bss_scores(references, estimates, 8000, "v4")
    v3 = bss_scores(references, estimates, 8000, "v3")
    assert set(v4) == {"sdr", "sir", "sar"} and len(v4["sdr"]) == 2
    assert abs(v4["sdr"][0] - v3["sdr"][0]) < 1.0  # stationary noise: framewise medians near the whole-clip value
    assert v4["sdr"][0] > 15


def test_paired_comparison_of_two_evaluations(tmp_path):
    """``benchmarks/paired.py`` compares two ``evaluate --json`` runs song by song; since the accompaniment is the
    mixture minus the vocals, each song's vocals and accompaniment uSDR change by the same amount."""
    from benchmarks.paired import clip_scores, paired_change

    script = str(Path(__file__).resolve().parents[1] / "benchmarks" / "paired.py")
    write_stems(tmp_path / "data", "stems", tracks=2)
    reports = []
    for name, softness in (("binary", "0"), ("soft", "4")):
        reports.append(tmp_path / f"{name}.json")
        result = subprocess.run([sys.executable, "-m", "stream_dc", "evaluate", "--data", str(tmp_path / "data"),
                                 "--dataset", "stems", "--systems", "stream-dc", "--bss", "none", "--mask-softness",
                                 softness, "--json", str(reports[-1])], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    before, after = (clip_scores(json.loads(r.read_text()), "stream-dc") for r in reports)
    assert len(before) == 2 and set(before) == set(after)
    differences = np.stack([after[n] - before[n] for n in before])
    assert np.abs(differences).max() > 1e-3  # the two runs differ
    np.testing.assert_allclose(differences[:, 0], differences[:, 1], atol=1e-3)
    change = paired_change(before, after, tie=0.0)
    np.testing.assert_allclose(change["mean"], differences.mean(axis=0))
    assert change["up"] == int(np.sum(differences[:, 1] > 0)) and change["up"] + change["down"] == 2
    result = subprocess.run([sys.executable, script, *map(str, reports)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"{change['mean'][1]:+8.3f}" in result.stdout
    missing = subprocess.run([sys.executable, script, str(reports[0]), "--system", "repet"],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "repet" in missing.stderr


def test_wiener_post_filter_uses_the_stereo_image():
    """A voice in the centre and an accompaniment panned left, with blurred masks: one EM iteration of the
    multichannel Wiener filter brings the vocals' STFT closer to the voice's; a mask of ones keeps the mixture."""
    pytest.importorskip("norbert")
    from benchmarks.wiener import wiener_vocals

    rng = np.random.default_rng(0)
    shape = (120, 40)

    def sources():  # complex STFT values with a heavy-tailed magnitude, as music has
        return (rng.normal(size=shape) + 1j * rng.normal(size=shape)) * rng.gamma(0.5, size=shape)
    v, a = sources(), sources()
    voice = np.stack([v, v], axis=-1)
    accompaniment = np.stack([a, 0.1 * a], axis=-1)
    mixture = (voice + accompaniment).astype(np.complex64)
    ratio = np.abs(v) ** 2 / (np.abs(v) ** 2 + np.abs(a) ** 2 * 0.505 + 1e-12)  # per-channel mean powers
    mask = (0.6 * ratio + 0.2)[..., None]  # the ideal ratio mask, blurred towards one half

    def error(estimate):
        return float(np.sum(np.abs(estimate - voice) ** 2))

    filtered = wiener_vocals(mixture, mask, iterations=1, exponent=1.0)
    assert filtered.shape == mixture.shape
    assert error(filtered) < 0.8 * error(mixture * mask)
    np.testing.assert_allclose(wiener_vocals(mixture, np.ones_like(mask), 1, 1.0), mixture, rtol=1e-4, atol=1e-3)
