"""Model bundles: every way a bundle folder can be broken is refused with its reason, a graph that does not match its
config included."""
import json
import shutil

import pytest

from stream_dc.bundle import BundleError, load_bundle
from stream_dc.inference import EmbeddingModel


def copy_bundle(tmp_path):
    target = tmp_path / "bundle"
    shutil.copytree(load_bundle().directory, target)
    return target


def test_bundle_errors(tmp_path):
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "missing")
    target = copy_bundle(tmp_path)
    config = json.loads((target / "config.json").read_text())

    (target / "config.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(target)

    broken = dict(config, voice_centroid=[1.0, 2.0])
    (target / "config.json").write_text(json.dumps(broken))
    with pytest.raises(BundleError, match="voice_centroid"):
        load_bundle(target)

    (target / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "feature_mean"}))
    with pytest.raises(BundleError, match="incomplete"):
        load_bundle(target)

    (target / "config.json").write_text(json.dumps(config))
    data = bytearray((target / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (target / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum"):
        load_bundle(target)

    (target / "model.onnx").unlink()
    with pytest.raises(BundleError, match="no model.onnx"):
        load_bundle(target)


def test_bundle_whose_graph_does_not_match_its_config(tmp_path):
    from stream_dc.bundle import sha256_of

    target = copy_bundle(tmp_path)
    config = json.loads((target / "config.json").read_text())
    (target / "model.onnx").write_bytes(b"garbage, not an ONNX graph")
    config["model_sha256"] = sha256_of(b"garbage, not an ONNX graph")
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="cannot be loaded"):
        EmbeddingModel(load_bundle(target), "cpu")
