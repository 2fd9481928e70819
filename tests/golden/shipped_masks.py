"""The shipped model's voice masks on a fixed synthetic mixture, summarised, for the golden regression test.

    python -m tests.golden.shipped_masks     # rewrite shipped_masks.json after a deliberate change

Any change to features, resampling, export, clustering or the bundle that alters what the shipped model does shows
up as a difference from the stored summary.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).with_suffix(".json")


def summary() -> dict:
    """Per-band and per-frame means of the offline voice mask, and the vocals' share of the energy, offline and in
    the live preset, for a 6 s mixture at 44.1 kHz stereo."""
    from stream_dc.separator import Separator
    from stream_dc.stream import StreamProcessor
    from tests.synthetic import accompaniment, voice
    from tests.test_stream import run_blocks

    rng = np.random.default_rng(2026)
    rate = 44100
    v, a = voice(6.0, rate, rng), accompaniment(6.0, rate, rng)
    a *= np.sqrt(np.mean(v ** 2) / np.mean(a ** 2))
    mix = np.stack([v + a, 0.8 * v + a], axis=1).astype(np.float32)
    separator = Separator(device="cpu", keep_analysis=True)
    vocals, _ = separator.separate(mix, rate)
    masks = separator.analysis.masks
    processor = StreamProcessor(None, rate, 2, latency="live", keep="vocals", device="cpu")
    live = run_blocks(processor, mix, [1024])[processor.latency_samples:]
    energy = float(np.sum(mix ** 2))
    return {"band_means": np.round(masks.mean(axis=0), 4).tolist(),
            "frame_means": np.round(masks.mean(axis=1), 4).tolist(),
            "vocals_share_offline": round(float(np.sum(vocals ** 2)) / energy, 4),
            "vocals_share_live": round(float(np.sum(live ** 2)) / energy, 4)}


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(summary()) + "\n")
    print(f"wrote {GOLDEN}")
