"""Running the network: which onnxruntime provider a --device choice gets, and no silent fallback to the CPU."""
import pytest

from stream_dc.inference import DeviceError, choose_providers


def test_device_choice():
    assert choose_providers("cpu") == ["CPUExecutionProvider"]
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(DeviceError, match="onnxruntime-gpu"):
            choose_providers("cuda")
        assert choose_providers("auto") == ["CPUExecutionProvider"]
    with pytest.raises(DeviceError):
        choose_providers("tpu")


def test_device_cuda_never_falls_back_to_the_cpu_silently(monkeypatch, bundle):
    """onnxruntime quietly runs on the CPU when CUDA fails to start; --device cuda must fail instead."""
    import onnxruntime

    from stream_dc.inference import DeviceError, EmbeddingModel

    class FallenBack:
        def __init__(self, model, options, providers):
            self.providers = providers

        def get_providers(self):
            return ["CPUExecutionProvider"]

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider",
                                                                          "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "InferenceSession", FallenBack)
    with pytest.raises(DeviceError, match="could not start its CUDA provider"):
        EmbeddingModel(bundle, "cuda")
