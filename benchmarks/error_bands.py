"""Where the separation error lies: the offline masks' error on professionally produced songs, band by band.

    python benchmarks/error_bands.py --data ../shared/data [--set validation] [--model DIR]

For each held-out MUSDB18 song (``--set``, see ``benchmarks/quality.py``), the shipped pipeline's voice mask on the
input's own STFT (clustering, voice-activity gate and mask refiner, exactly as ``stream-dc separate`` applies it,
before its Wiener post-filter) is compared with the stems, per frequency band:
- ``error``: the error energy ``sum |mask * X - V|^2`` in the band over the song's accompaniment energy (the
  accompaniment's error equals the vocals' error, since the stems sum to the mixture), split into the voice left in
  the accompaniment ``sum |(1 - mask) V|^2`` and the accompaniment taken into the vocals ``sum |mask A|^2`` (the two
  need not add up to ``error``: they share a cross term);
- ``oracle in band``: the median uSDR of vocals and accompaniment when the mask in that band alone is replaced by
  the oracle binary mask ``|V| > |A|`` on the same STFT: what a perfect decision in that band would be worth.
Errors are summed over songs (each over its own accompaniment's energy). Writes benchmarks/results/error_bands.txt.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine, write_report  # noqa: E402
from benchmarks.quality import SETS  # noqa: E402

EDGES_HZ = (0, 150, 250, 500, 1000, 2000, 4000, 8000, None)  # None: up to the Nyquist frequency


def song_masks(separator, track):
    """The pipeline's voice mask ``(frames, bins, 1)`` on the song's STFT, the STFT geometry, the mixture's and the
    voice's spectra ``(frames, bins, channels)`` and the bins' frequencies ``(bins,)``."""
    from stream_dc.audio import AudioSource
    from stream_dc.evaluation.oracles import whole_stft
    from stream_dc.masks import MelMaskTrack
    from stream_dc.synthesis import ProjectionSynthesis

    mixture = track.mixture.astype(np.float32)
    mel_masks, _ = separator.offline_masks(AudioSource.from_array(mixture, track.sample_rate))
    geometry, spectra = whole_stft(mixture, track.sample_rate, separator.window_hops)
    _, voice = whole_stft(track.voice, track.sample_rate, separator.window_hops)
    synthesis = ProjectionSynthesis(separator.bundle.config.features, track.sample_rate, mixture.shape[1],
                                    MelMaskTrack.from_array(mel_masks), separator.refiner,
                                    window_hops=separator.window_hops)
    positions = synthesis.projector.analysis_positions(geometry.first_frame, len(spectra))
    masks = synthesis.voice_masks(spectra, MelMaskTrack.from_array(mel_masks).at(positions))
    return masks[..., None], geometry, spectra, voice, synthesis.frequencies


def held_out_songs_arguments(description: str) -> argparse.Namespace:
    """``--data``, ``--set`` and ``--model``, as the benchmarks on held-out MUSDB18 songs take them (``--set
    training``: the MUSDB18 songs of neither held-out set, which the model trained on)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--set", default="validation", choices=[*sorted(SETS), "training"])
    parser.add_argument("--model", default=None, help="bundle folder (default: the shipped one)")
    return parser.parse_args()


def held_out_songs(data: Path, set_name: str) -> list:
    """The MUSDB18 songs (``TrackRef``) of the held-out set ``set_name`` (see ``benchmarks/quality.py``), or of
    neither (``training``)."""
    from stream_dc.evaluation.datasets import list_tracks

    refs = list_tracks(data / "musdb18-7", "musdb")
    if set_name == "training":
        held_out = {group for songs in SETS.values() for group in songs["pro"]}
        return [r for r in refs if r.group not in held_out]
    groups = set(SETS[set_name]["pro"])
    return [r for r in refs if r.group in groups]


def main() -> int:
    args = held_out_songs_arguments(__doc__.splitlines()[0])

    from stream_dc.evaluation.evaluate import usdr
    from stream_dc.evaluation.oracles import masked_stems
    from stream_dc.separator import Separator

    refs = held_out_songs(args.data, args.set)
    separator = Separator(args.model, device="cpu")
    bands = list(itertools.pairwise(EDGES_HZ))
    errors = np.zeros((len(bands), 3))  # error, voice left, accompaniment taken
    scores = {"as is": []} | {band: [] for band in bands}
    for ref in refs:
        track = ref.load()
        mask, geometry, spectra, voice, frequencies = song_masks(separator, track)
        accompaniment = spectra - voice
        norm = float(np.sum(np.abs(accompaniment) ** 2))
        oracle = (np.abs(voice) > np.abs(accompaniment)).astype(np.float32)
        length, references = len(track.mixture), (track.voice, track.accompaniment)
        stems = masked_stems(spectra, mask, geometry, length)
        scores["as is"].append([usdr(reference, stem) for reference, stem in zip(references, stems)])
        for i, (low, high) in enumerate(bands):
            inside = (frequencies >= low) & (frequencies < (np.inf if high is None else high))
            m, x, v, a = mask[:, inside], spectra[:, inside], voice[:, inside], accompaniment[:, inside]
            errors[i] += [np.sum(np.abs(m * x - v) ** 2) / norm, np.sum(np.abs((1 - m) * v) ** 2) / norm,
                          np.sum(np.abs(m * a) ** 2) / norm]
            replaced = np.where(inside[None, :, None], oracle, mask)
            stems = masked_stems(spectra, replaced, geometry, length)
            scores[(low, high)].append([usdr(reference, stem) for reference, stem in zip(references, stems)])
        print(f"{track.name}: done", file=sys.stderr, flush=True)

    def medians(rows):
        return "{:.2f} / {:.2f}".format(*np.median(np.asarray(rows), axis=0))

    lines = [(f"Error by frequency band: {len(refs)} MUSDB18 songs of the {args.set} set, offline, model "
              f"{args.model or 'shipped'}; {machine()}"),
             f"median uSDR vocals / accompaniment as is: {medians(scores['as is'])}",
             "",
             f"{'band (Hz)':>12}  {'error':>6}  {'voice left':>10}  {'accomp taken':>12}  oracle in band (uSDR v / a)"]
    for i, (low, high) in enumerate(bands):
        name = f"{low}-{high if high is not None else 'top'}"
        lines.append(f"{name:>12}  {errors[i, 0]:6.3f}  {errors[i, 1]:10.3f}  {errors[i, 2]:12.3f}  "
                     f"{medians(scores[(low, high)])}")
    write_report("error_bands.txt", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
