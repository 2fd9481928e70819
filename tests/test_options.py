"""The user's knobs of a separation: values that cannot work are refused naming the option, options a mode cannot
apply are listed, and resolving against a bundle fills in its settings."""
import pytest

from stream_dc.options import SeparationOptions


@pytest.mark.parametrize("options,message", [
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"mask_softness": -1.0}, "mask softness"),
    ({"synthesis_window_ms": 48}, "synthesis window 48 ms"),
    ({"key": 13}, "key 13"),
    ({"vocal_gain_db": 1000.0}, "vocal gain 1000.0 dB"),
    ({"mode": "stream", "reconstruction": "inverse-mel"}, "stream mode uses projection reconstruction only"),
    ({"latency": "hop=9"}, "custom latency 'hop=9'"),
    ({"latency": "instant"}, "unknown latency preset 'instant'"),
], ids=["device", "softness", "window", "key", "gain", "reconstruction", "custom-latency", "latency-preset"])
def test_options_that_cannot_work_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        SeparationOptions(**options)


def test_changed_refuses_an_unknown_option():
    with pytest.raises(TypeError, match="unknown"):
        SeparationOptions().changed(unknown=1)
    assert SeparationOptions().changed(key=2.0).key == 2.0


def test_unused_lists_the_options_a_mode_cannot_apply():
    assert SeparationOptions().unused(streaming=True) == [] and SeparationOptions().unused(streaming=False) == []
    no_wiener = SeparationOptions(wiener=False)
    assert no_wiener.unused(streaming=True) == ["--no-wiener"] and no_wiener.unused(streaming=False) == []
    live = SeparationOptions(latency="live")
    assert live.unused(streaming=False) == ["--latency"] and live.unused(streaming=True) == []


def test_resolve_fills_in_the_bundles_settings(bundle):
    resolved = SeparationOptions().resolve(bundle)
    assert resolved.bundle is bundle
    assert resolved.mask_softness == bundle.config.mask_softness
    assert resolved.voice_activity is bundle.config.voice_activity and resolved.voice_activity is not None
    assert SeparationOptions(mask_softness=2).resolve(bundle).mask_softness == 2.0
    assert SeparationOptions(voice_gate=False).resolve(bundle).voice_activity is None
