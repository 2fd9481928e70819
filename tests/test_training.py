"""Training end to end on synthetic data: it learns, it resumes exactly, it runs under torchrun (gloo), and it
refuses to resume from a checkpoint that would run code."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from tests.commands import CLI  # noqa: E402
from tests.synthetic import accompaniment, voice, write_mir1k_like  # noqa: E402

TRAIN = ["--validation", "dave", "--preset", "tiny", "--workers", "1", "--batch-frames", "1600", "--seed", "3"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    write_mir1k_like(folder, ["alice", "bob", "carol", "dave"], clips_per_singer=5, seconds=4.0)
    return folder


def train(args):
    from training.train import main

    assert main(args) == 0


def read_log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_tiny_model_learns_to_separate(dataset, tmp_path):
    from export.exporter import export_checkpoint
    from stream_dc.separator import Separator

    run = tmp_path / "run"
    train(["--data", str(dataset), "--out", str(run), "--epochs-short", "4", "--epochs-long", "2"] + TRAIN)
    log = read_log(run)
    assert [e["chunk"] for e in log] == [100] * 4 + [500] * 2
    assert log[-1]["val_loss"] < log[0]["val_loss"]
    export_checkpoint(run / "best.pt", tmp_path / "bundle", "float32")
    separator = Separator(str(tmp_path / "bundle"), device="cpu")
    # the voice-activity gate is fitted at the end of training (the synthetic voice rests between notes) and exported
    gate = torch.load(run / "best.pt", weights_only=True)["labelling"]["voice_activity"]
    assert gate["statistics"]["frames"] > 0 and 0 < gate["statistics"]["voiced_share"] < 1
    np.testing.assert_allclose(separator.bundle.config.voice_activity.weights, gate["weights"], rtol=1e-6)
    # refitted for the bundle with its own graphs, with the logit offset asked for
    from stream_dc.bundle import load_bundle
    from training.voice_activity import main as fit_gate

    assert fit_gate([str(tmp_path / "bundle"), "--data", str(dataset), "--offset", "0.25"] + TRAIN) == 0
    refitted = load_bundle(str(tmp_path / "bundle")).config.voice_activity
    assert refitted.offset == 0.25 and refitted.weights.shape == separator.bundle.config.voice_activity.weights.shape
    assert fit_gate([str(tmp_path / "bundle"), "--data", str(dataset), "--offset", "1.5", "--offset-only"] + TRAIN) == 0
    reset = load_bundle(str(tmp_path / "bundle")).config.voice_activity
    assert reset.offset == 1.5
    np.testing.assert_array_equal(reset.weights, refitted.weights)
    np.testing.assert_array_equal(reset.bias, refitted.bias)
    restore = [str(tmp_path / "bundle"), "--data", str(dataset), "--offset", "0.25", "--offset-only"]
    assert fit_gate(restore + TRAIN) == 0
    rng = np.random.default_rng(99)  # unseen mixtures
    gains = []
    for _ in range(3):
        v, a = voice(4.0, 16000, rng), accompaniment(4.0, 16000, rng)
        a *= np.sqrt(np.mean(v ** 2) / np.mean(a ** 2))
        vocals, _ = separator.separate(v + a, 16000)
        sdr = lambda est: 10 * np.log10(np.sum(v ** 2) / np.sum((v - est) ** 2))  # noqa: E731
        gains.append(sdr(vocals) - sdr(v + a))
    assert np.mean(gains) > 3.0, gains
    # the voice labels measured again for the bundle with the network it stores come back as training measured them
    from stream_dc.bundle import write_config
    from training.calibrate import main as recalibrate

    trained = torch.load(run / "best.pt", weights_only=True)
    config = load_bundle(str(tmp_path / "bundle")).config
    config.voice_centroid, config.accompaniment_centroid = config.accompaniment_centroid, config.voice_centroid
    config.voice_thresholds = (0.9, 0.9)
    write_config(tmp_path / "bundle", config)
    assert recalibrate([str(tmp_path / "bundle"), "--data", str(dataset)] + TRAIN) == 0
    relabelled = load_bundle(str(tmp_path / "bundle")).config
    np.testing.assert_allclose(relabelled.voice_centroid, trained["references"]["voice"], atol=1e-4)
    np.testing.assert_allclose(relabelled.accompaniment_centroid, trained["references"]["accompaniment"], atol=1e-4)
    np.testing.assert_allclose(relabelled.voice_thresholds, trained["labelling"]["voice_thresholds"], atol=1e-3)


@pytest.mark.slow
def test_resume_continues_exactly(dataset, tmp_path):
    common = ["--data", str(dataset), "--epochs-short", "2", "--epochs-long", "1"] + TRAIN
    train(common + ["--out", str(tmp_path / "whole")])
    train(common + ["--out", str(tmp_path / "parts"), "--max-minutes", "0.0001"])  # stops after one epoch
    assert len(read_log(tmp_path / "parts")) == 1
    train(common + ["--out", str(tmp_path / "parts"), "--resume"])
    whole, parts = read_log(tmp_path / "whole"), read_log(tmp_path / "parts")
    assert len(parts) == 3
    for a, b in zip(whole, parts):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    best = torch.load(tmp_path / "parts" / "best.pt", weights_only=True)
    assert "references" in best and best["provenance"]["complete"]
    clear, weak = best["labelling"]["voice_thresholds"]
    assert clear >= weak and best["labelling"]["statistics"]["voiced_mixtures"] > 0


@pytest.mark.slow
def test_distributed_training_with_two_cpu_processes(dataset, tmp_path):
    run = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "training.train", "--data", str(dataset), "--out", str(run), "--epochs-short", "1",
               "--epochs-long", "1", "--device", "cpu"] + TRAIN
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    log = read_log(run)
    assert len(log) == 2
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["provenance"]["world_size"] == 2 and "references" in best


@pytest.mark.slow
@pytest.mark.parametrize("sent,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_training_with_workers_ends_cleanly_on_ctrl_c_and_sigterm(dataset, tmp_path, sent, status):
    """Ctrl-C reaches the training process and its workers (the terminal signals the whole process group): one
    message, no traceback, and a run that --resume continues."""
    run = tmp_path / "run"
    command = [sys.executable, "-m", "training.train", "--data", str(dataset), "--out", str(run),
               "--epochs-short", "50", "--epochs-long", "50"] + TRAIN + ["--workers", "2"]  # the last --workers counts
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        seen = ""
        while "epoch 1:" not in seen:  # training has begun and the workers are feeding it
            line = process.stderr.readline()
            assert line, f"training ended early: {seen}"
            seen += line
        os.killpg(process.pid, sent)
        _, rest = process.communicate(timeout=120)
        stderr = seen + rest
        assert process.returncode == status, stderr
        assert "interrupted; continue with --resume" in stderr and "Traceback" not in stderr
        for _ in range(100):  # the workers are gone with it: nothing of the process group is left
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("processes of the training run are still alive")
    finally:  # whatever happened above, nothing outlives the test
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(30)
    assert (run / "last.pt").exists()


def test_resume_refuses_a_checkpoint_that_would_run_code(tmp_path):
    pytest.importorskip("torch")
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "run").mkdir()
    with open(tmp_path / "run" / "last.pt", "wb") as handle:
        pickle.dump({"train_state": Payload()}, handle)
    from tests.synthetic import write_mir1k_like

    write_mir1k_like(tmp_path / "data", ["a", "b"], 1, seconds=1.0)
    result = subprocess.run(CLI + ["train", "--data", str(tmp_path / "data"), "--validation", "b", "--out",
                                   str(tmp_path / "run"), "--resume", "--preset", "tiny", "--workers", "1"],
                            capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert "cannot be read" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()
