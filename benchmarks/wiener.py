"""Variants of the multichannel Wiener post-filter on the offline masks, measured on professionally produced songs.

    python benchmarks/wiener.py --data ../shared/data [--set validation|report|training] [--model DIR]

For each MUSDB18 song of ``--set`` (see ``benchmarks/error_bands.py``), the shipped pipeline's voice mask on the
song's own STFT (clustering, gate and refiner, as ``stream-dc separate`` applies it before its post-filter)
gives the two sources' magnitude estimates ``mask**p * |X|`` and ``(1 - mask)**p * |X|`` on each channel. norbert's
``wiener`` (the maintained implementation of the multichannel Wiener filter, as in open-unmix) then fits a spatial
covariance per source and frequency and refines the vocals' STFT by expectation-maximisation; the accompaniment is
the mixture minus the vocals, as in stream-dc. One iteration with ``p = 0.5`` is what stream-dc applies offline
(``stream_dc.wiener``, the same step). Prints, for each variant (EM iterations, exponent ``p``), the median and mean
uSDR of vocals and accompaniment and the mean change per song against the masks without the filter (``--no-wiener``;
a song's vocals and accompaniment change by the same amount), with its standard error. Writes
benchmarks/results/wiener_SET.txt.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine, write_report
from benchmarks.error_bands import held_out_songs, held_out_songs_arguments, song_masks
from benchmarks.paired import paired_change

VARIANTS = ((1, 1.0), (3, 1.0), (1, 2.0), (1, 0.5))  # (EM iterations, exponent of the masks)


def wiener_vocals(spectra: np.ndarray, mask: np.ndarray, iterations: int, exponent: float) -> np.ndarray:
    """The vocals' STFT ``(frames, bins, channels)`` complex64 after the Wiener filter, from the mixture's STFT
    ``(frames, bins, channels)`` and the pipeline's voice mask ``(frames, bins, 1)``."""
    import norbert

    magnitude = np.abs(spectra).astype(np.float64)
    sources = np.stack([mask ** exponent * magnitude, (1.0 - mask) ** exponent * magnitude], axis=-1)
    return norbert.wiener(sources, spectra.astype(np.complex128), iterations=iterations)[..., 0].astype(np.complex64)


def main() -> int:
    args = held_out_songs_arguments(__doc__.splitlines()[0])
    try:
        import norbert  # noqa: F401
    except ImportError:
        print("wiener: needs norbert: pip install 'stream-dc[eval]'", file=sys.stderr)
        return 1

    from stream_dc.evaluation.evaluate import usdr
    from stream_dc.separator import Separator
    from stream_dc.stft import OverlapAdd

    refs = held_out_songs(args.data, args.set)
    separator = Separator(args.model, device="cpu")
    names = ["no filter"] + [f"{iterations} iteration{'s' * (iterations > 1)}, p = {p:g}"
                             + (" (shipped)" if (iterations, p) == (1, 0.5) else "") for iterations, p in VARIANTS]
    scores = {name: {} for name in names}  # variant -> song -> (2,) uSDR of vocals and accompaniment
    for ref in refs:
        track = ref.load()
        mask, geometry, spectra, _, _ = song_masks(separator, track)
        mixture, length = track.mixture, len(track.mixture)
        candidates = [spectra * mask] + [wiener_vocals(spectra, mask, i, p) for i, p in VARIANTS]
        for name, vocal_spectra in zip(names, candidates):
            vocals = OverlapAdd(geometry, spectra.shape[2]).add(vocal_spectra)[:length]
            scores[name][track.name] = np.array([usdr(track.voice, vocals),
                                                 usdr(track.accompaniment, mixture - vocals)])
        print(f"{track.name}: done", file=sys.stderr, flush=True)

    width = max(len(name) for name in names)
    lines = [(f"Multichannel Wiener post-filter (norbert) on the offline masks: {len(refs)} MUSDB18 songs of the "
              f"{args.set} set, model {args.model or 'shipped'}; {machine()}"),
             f"{'variant':>{width}}  {'median uSDR v / a':>17}  {'mean uSDR v / a':>15}  "
             f"{'change per song':>17}  up / down",
             ]
    for name in names:
        values = np.stack(list(scores[name].values()))
        change = paired_change(scores["no filter"], scores[name], tie=0.05)
        lines.append(f"{name:>{width}}  {np.median(values[:, 0]):7.2f} / {np.median(values[:, 1]):5.2f}  "
                     f"{values[:, 0].mean():6.2f} / {values[:, 1].mean():5.2f}  "
                     f"{change['mean'][1]:+7.3f} +- {change['standard_error'][1]:5.3f}  "
                     f"{change['up']} / {change['down']}")
    write_report(f"wiener_{args.set}.txt", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
