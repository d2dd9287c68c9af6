"""Tests for reenact.smoothing.OneEuroFilter."""

from __future__ import annotations

import numpy as np
import pytest

from reenact.smoothing import OneEuroFilter


def test_first_sample_passes_through_and_output_is_a_copy() -> None:
    f = OneEuroFilter()
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    y = f(x, 0.0)
    np.testing.assert_array_equal(y, x)
    y[0, 0] = 99.0  # the caller owning the result must not corrupt the filter state
    np.testing.assert_array_equal(f(x, 1 / 30), x)


def test_constant_signal_stays_constant() -> None:
    f = OneEuroFilter(min_cutoff=0.5, beta=2.0)
    x = np.full((478, 2), 123.25)
    for i in range(200):
        np.testing.assert_array_equal(f(x, i / 30), x)


def test_still_noisy_signal_jitter_reduced() -> None:
    rng = np.random.default_rng(0)
    # beta is in Hz per (unit/s): noise of std 1 at 30 fps looks like ~10 units/s of speed, so a
    # beta that keeps the still cutoff low must be small against 1/10.
    f = OneEuroFilter(min_cutoff=0.1, beta=0.005)
    truth = np.array([10.0, -4.0, 0.5])
    raw = truth + rng.normal(0.0, 1.0, size=(600, 3))
    out = np.array([f(r, i / 30) for i, r in enumerate(raw)])
    settled = out[100:]  # after the filter has forgotten its (noisy) first sample
    raw_jitter = np.std(np.diff(raw[100:], axis=0))
    out_jitter = np.std(np.diff(settled, axis=0))
    assert raw_jitter / out_jitter > 20.0  # frame-to-frame shake; measured about 46x
    assert np.std(raw[100:] - truth) / np.std(settled - truth) > 4.0  # measured about 5.6x
    assert np.max(np.abs(settled - truth)) < 1.0


def test_ramp_followed_with_bounded_lag() -> None:
    speed = 100.0  # units per second
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5)
    ts = np.arange(300) / 30
    out = np.array([f(np.array([speed * t]), t)[0] for t in ts])
    lag = speed * ts - out
    # The cutoff at this speed is about 1 + 0.5 * 100 = 51 Hz: the steady lag is about
    # speed * dt * (1 - alpha) / alpha, under a tenth of one frame's motion.
    assert np.all(lag >= -1e-9)
    assert np.max(lag[60:]) < 0.1 * speed / 30
    # Without beta the lag is the classic first-order one, speed * tau (tau = 1 / (2 pi fc)).
    slow = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    out0 = np.array([slow(np.array([speed * t]), t)[0] for t in ts])
    tau = 1 / (2 * np.pi)
    assert abs((speed * ts[-1] - out0[-1]) - speed * tau) < 0.01 * speed * tau


def test_variable_frame_rate_matches_fixed_rate() -> None:
    # A slow sine sampled at irregular times must be tracked like the same sine sampled regularly.
    rng = np.random.default_rng(1)
    ts_vfr = np.cumsum(rng.uniform(1 / 60, 1 / 15, size=400))
    ts_cfr = np.arange(1, 801) / 60
    err = []
    for ts in (ts_vfr, ts_cfr):
        f = OneEuroFilter(min_cutoff=2.0, beta=0.1)
        sig = np.sin(2 * np.pi * 0.2 * ts)
        out = np.array([f(np.array(s), t) for s, t in zip(sig, ts)])
        err.append(np.max(np.abs(out - sig)[ts > 1.0]))
    # Lag of a 2 Hz low-pass on a 0.2 Hz unit sine is about 2*pi*0.2*tau = 0.1.
    assert err[0] < 0.15 and err[1] < 0.15
    assert abs(err[0] - err[1]) < 0.03


@pytest.mark.parametrize("dt", [0.0, -0.5])
def test_repeated_or_backwards_timestamp_is_finite_and_tiny_step(dt: float) -> None:
    f = OneEuroFilter(min_cutoff=1.0, beta=1.0)
    f(np.zeros(2), 1.0)
    y = f(np.full(2, 10.0), 1.0 + dt)
    assert np.all(np.isfinite(y))
    assert np.all(np.abs(y) < 0.1)  # a near-zero time step hardly moves the output
    # The clock did not go back: the next normal frame is one frame after t=1.0.
    z = f(np.full(2, 10.0), 1.0 + 1 / 30)
    assert np.all(np.isfinite(z)) and np.all(z > y)


def test_reset_forgets_history() -> None:
    f = OneEuroFilter(min_cutoff=0.1)
    f(np.zeros(3), 0.0)
    f(np.zeros(3), 0.1)
    f.reset()
    np.testing.assert_array_equal(f(np.ones(3), 0.0), np.ones(3))


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0.0)
    f = OneEuroFilter()
    f(np.zeros(2), 0.0)
    with pytest.raises(ValueError):
        f(np.zeros(3), 0.1)
    with pytest.raises(ValueError):
        f(np.array([np.nan, 0.0]), 0.2)


def test_the_paper_s_update_in_float64_and_float32_with_outputs_that_stay_the_callers() -> None:
    """The filter's buffers are reused between samples: every output is still the caller's own, equal to the 1€
    update written out plainly, and a float32 filter follows the float64 one to float32's precision."""
    import math

    def alpha(cutoff, dt):
        return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * cutoff) / dt)

    rng = np.random.default_rng(0)
    samples = [rng.normal(size=(2, 8, 8)) for _ in range(20)]
    wide, narrow = OneEuroFilter(2.0, 100.0, 5.0), OneEuroFilter(2.0, 100.0, 5.0, dtype=np.float32)
    x, dx, outputs, expected = samples[0], np.zeros_like(samples[0]), [], []
    for i, sample in enumerate(samples):
        t = i / 25
        if i:
            dx = dx + alpha(5.0, 1 / 25) * ((sample - x) * 25 - dx)
            x = x + alpha(2.0 + 100.0 * np.abs(dx), 1 / 25) * (sample - x)
        got, got32 = wide(sample, t), narrow(sample, t)
        outputs.append(got)
        expected.append(x)
        np.testing.assert_allclose(got, x, rtol=1e-12, atol=1e-12)
        assert got32.dtype == np.float32
        np.testing.assert_allclose(got32, x, rtol=1e-4, atol=1e-5)
    for got, x in zip(outputs, expected):  # no later sample overwrote an earlier output
        np.testing.assert_allclose(got, x, rtol=1e-12, atol=1e-12)
