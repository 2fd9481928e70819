"""CPU against CUDA on one machine: real-time factors of offline separation and of the balanced and live presets,
and how far the CUDA stems stray from the CPU ones.

    python benchmarks/gpu_check.py [--seconds 60] [--repeats 3]

Needs ``onnxruntime-gpu`` (in place of ``onnxruntime``) and an NVIDIA GPU; ``benchmarks/gpu_check.sh`` installs
the wheel and runs this. The real-time factors are those the commands report (median of ``--repeats`` runs, as
``speed.py``); the stems are compared as the signal-to-difference ratio of the CUDA vocals against the CPU vocals,
in dB (the GPU graph has float16 weights and the CPU graph int8 ones, so they differ by the quantisation: export
holds the two graphs' embeddings to a mean cosine of 0.999). The target: offline real-time factor <= 0.01. Writes
benchmarks/results/gpu_check.txt.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine, music, table, write_report  # noqa: E402
from benchmarks.speed import CLI, timed_runs  # noqa: E402
from stream_dc.pcm import decode_pcm, encode_pcm  # noqa: E402

RATE, CHANNELS = 44100, 2
TARGET = 0.01


def agreement(cpu: np.ndarray, cuda: np.ndarray) -> float:
    """Signal-to-difference ratio in dB of ``cuda`` against ``cpu``."""
    return float(10 * np.log10(np.sum(cpu ** 2) / max(np.sum((cpu - cuda) ** 2), 1e-20)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio length per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command (the median counts)")
    args = parser.parse_args()
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        print("gpu_check: this onnxruntime has no CUDA provider (install onnxruntime-gpu in place of onnxruntime)",
              file=sys.stderr)
        return 1
    audio = music(args.seconds, RATE, CHANNELS)
    pcm = encode_pcm(audio, "s16")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input.wav"
        sf.write(path, audio, RATE, subtype="PCM_16")
        vocals = {}
        for device in ("cpu", "cuda"):
            out = Path(folder) / device
            factor, wall = timed_runs(CLI + ["separate", str(path), "-o", str(out), "--device", device], args.repeats)
            vocals[device] = sf.read(out / "input" / "vocals.wav", dtype="float32")[0]
            rows.append({"mode": "offline", "device": device, "rtf": f"{factor:.4f}",
                         "wall_rtf": f"{wall / args.seconds:.4f}"})
        rows[-1]["vs_cpu_db"] = f"{agreement(vocals['cpu'], vocals['cuda']):.1f}"
        for preset in ("balanced", "live"):
            stems = {}
            for device in ("cpu", "cuda"):
                command = CLI + ["stream", "--rate", str(RATE), "--channels", str(CHANNELS), "--dtype", "s16",
                                 "--latency", preset, "--keep", "vocals", "--device", device]
                factor, wall = timed_runs(command, args.repeats, pcm)
                result = subprocess.run(command + ["-q"], input=pcm, capture_output=True, check=True)
                stems[device] = decode_pcm(result.stdout, "s16", CHANNELS)
                rows.append({"mode": f"stream {preset}", "device": device, "rtf": f"{factor:.4f}",
                             "wall_rtf": f"{wall / args.seconds:.4f}"})
            rows[-1]["vs_cpu_db"] = f"{agreement(stems['cpu'], stems['cuda']):.1f}"
    offline = float(rows[1]["rtf"])
    verdict = (f"offline on CUDA: real-time factor {offline:.4f}, target <= {TARGET}: "
               f"{'met' if offline <= TARGET else 'NOT met'}")
    report = write_report("gpu_check.txt", f"machine: {machine(True)}; {args.seconds:.0f} s of 44.1 kHz stereo\n"
                          + table([{"vs_cpu_db": "-", **row} for row in rows],
                                  ["mode", "device", "rtf", "wall_rtf", "vs_cpu_db"]) + "\n" + verdict + "\n")
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
