"""Latency-aware gradient search on the MnasNet supernet (issue 13): E[LAT] against the LUT's own
predictions, its gradient, derivation from hand-set logits, a tiny search on real digits through
the CLI, resume after kill -9, and bad input. Everything runs on a real ONNX Runtime LUT of a tiny
space at the digits' 28x28, built once per module (about 10 s)."""

from __future__ import annotations

import itertools
import json
import random
import shutil

import pytest
import torch

from conftest import run_cli
from edgenas.latency.cache import LatencyCache
from edgenas.latency.estimator import make_latency_estimator
from edgenas.latency.protocol import Protocol
from edgenas.latency.settings import LatencySettings
from edgenas.spaces.mnas_choices import space_choices
from edgenas.supernet.expected_latency import ExpectedLatency
from edgenas.supernet.relaxation import ArchitectureDistribution
from edgenas.supernet.training import space_for

pytestmark = pytest.mark.usefixtures("one_thread")

OPTIONS = ["stages=c8_r1_s2,c16_r2_s2", "ops=dsconv,mbconv3", "se_ratios=0"]
FAST = Protocol(warmup=2, runs=6, retries=0, baseline_repeats=1, max_seconds=5.0, min_seconds=0.0)
SPACE_FLAGS = ["--space-preset", "demo", *[x for o in OPTIONS for x in ("--space-option", o)]]
LATENCY_FLAGS = ["--latency-runs", "6", "--latency-warmup", "2", "--latency-min-seconds", "0",
                 "--latency-calibration", "3", "--latency-layer-passes", "1"]


def _space():
    return space_for(space_choices("demo", OPTIONS), (1, 28, 28), 10)  # the digits' shape


@pytest.fixture(scope="module")
def lut_setup(tmp_path_factory):
    """A calibrated LUT of the tiny space (every layer timed), its E[LAT] and the cache file."""
    cache = tmp_path_factory.mktemp("latency") / "latency.sqlite"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    space = _space()
    estimator = make_latency_estimator(space, LatencySettings(mode="lut", cache=str(cache), protocol=FAST,
                                                              calibration_archs=3, layer_passes=1))
    try:
        expected = ExpectedLatency(space, estimator.lut)
        yield space, estimator.lut, expected, cache
    finally:
        estimator.close()
        torch.set_num_threads(threads)


def _cli(lut_setup, *extra):
    cache = lut_setup[3]
    return ["supernet", "search", *SPACE_FLAGS, "--dataset", "digits", "--latency-cache", cache, *LATENCY_FLAGS,
            *map(str, extra)]


# ---- E[LAT] ---------------------------------------------------------------------------------------
def test_expected_latency_of_a_one_hot_distribution_is_the_lut_prediction(lut_setup):
    space, lut, expected, _ = lut_setup
    rng = random.Random(3)
    for _ in range(8):
        indices = space.sample_indices(rng)
        arch = space.arch_from_indices(indices)
        assert expected.of_indices(indices) == pytest.approx(lut.predict(arch), rel=1e-12, abs=0)


def test_the_latency_range_is_the_fastest_and_slowest_network_of_the_space(lut_setup):
    space, lut, expected, _ = lut_setup
    every = [lut.predict(space.arch_from_indices(ix))
             for ix in itertools.product(*(range(len(d.choices)) for d in space.decisions))]
    low, high = expected.latency_range()
    assert low == pytest.approx(min(every), rel=1e-12) and high == pytest.approx(max(every), rel=1e-12)


def test_latency_alone_moves_probability_toward_cheaper_choices(lut_setup):
    space, lut, expected, _ = lut_setup
    # Which choice of each decision is cheapest (dearest) on average over the whole space, from the
    # LUT's own predictions of every architecture: where the latency gradient at uniform must lead.
    every = list(itertools.product(*(range(len(d.choices)) for d in space.decisions)))
    predicted = [lut.predict(space.arch_from_indices(ix)) for ix in every]
    distribution = ArchitectureDistribution(space)
    start = float(expected(distribution.probabilities()).detach())
    optimizer = torch.optim.SGD(distribution.parameters(), lr=0.1 / start)
    expected(distribution.probabilities()).backward()
    optimizer.step()
    probabilities = distribution.probabilities()
    assert float(expected(probabilities).detach()) < start
    checked = 0
    for number, decision in enumerate(space.decisions):
        means = [sum(p for ix, p in zip(every, predicted) if ix[number] == c) / sum(ix[number] == c for ix in every)
                 for c in range(len(decision.choices))]
        if max(means) - min(means) < 1e-3 * start:
            continue
        uniform = 1 / len(decision.choices)
        assert float(probabilities[number][means.index(min(means))]) > uniform, decision.name
        assert float(probabilities[number][means.index(max(means))]) < uniform, decision.name
        checked += 1
    assert checked >= 4


def test_derivation_from_hand_set_logits_gives_the_expected_string(lut_setup):
    space = lut_setup[0]
    distribution = ArchitectureDistribution(space)
    # block1: op, kernel, se, skip, width, layers; block2 likewise (choice indices set to win).
    winners = [1, 1, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0]
    with torch.no_grad():
        for logits, win in zip(distribution.logits, winners):
            logits[win] = 2.0
    assert distribution.derive() == "ir_r2_k5_s2_e3_c4 ds_r1_k3_s2_c16_noskip"


def _every(space):
    return list(itertools.product(*(range(len(d.choices)) for d in space.decisions)))


def _random_log_probs(space, seed):
    generator = torch.Generator().manual_seed(seed)
    return [torch.log_softmax(2.0 * torch.randn(len(d.choices), generator=generator, dtype=torch.float64), dim=0)
            for d in space.decisions]


def test_the_trade_off_is_the_best_of_the_whole_space_for_its_weight(lut_setup):
    """sum log p - weight * LUT ms, maximised by the dynamic programme, against every one of the
    1,536 architectures scored by the LUT itself; also the fast lookup against the LUT."""
    space, lut, expected, _ = lut_setup
    every = _every(space)
    predicted = {ix: lut.predict(space.arch_from_indices(ix)) for ix in every}
    fast = expected.fast_prediction()
    assert all(fast(ix) == pytest.approx(ms, rel=1e-12) for ix, ms in predicted.items())
    for seed in range(3):
        log_probs = _random_log_probs(space, seed)
        for weight in (-30.0 / predicted[every[0]], 0.0, 3.0 / predicted[every[0]], 300.0 / predicted[every[0]]):
            scores = {ix: sum(float(p[i]) for p, i in zip(log_probs, ix)) - weight * predicted[ix] for ix in every}
            chosen = expected.trade_off(log_probs, weight)
            assert scores[chosen] == pytest.approx(max(scores.values()), rel=1e-12, abs=1e-12)


def test_near_target_derivation_is_the_most_probable_network_in_the_band(lut_setup):
    """Against brute force over the whole space: the derived network lies within the tolerance of
    T and no network there is more probable; the mode is kept when it already lies there."""
    from edgenas.supernet.derivation import by_probability, log_probability, near_target

    space, lut, expected, _ = lut_setup
    every = _every(space)
    predicted = {ix: lut.predict(space.arch_from_indices(ix)) for ix in every}
    low, high = expected.latency_range()
    missed_by_the_mode = 0
    for seed in range(3):
        log_probs = _random_log_probs(space, seed)
        listed = list(by_probability(log_probs))
        assert sorted(listed) == every  # every architecture once, most probable first
        values = [log_probability(log_probs, ix) for ix in listed]
        assert all(a >= b - 1e-12 for a, b in zip(values, values[1:]))
        mode = listed[0]
        for fraction in (0.2, 0.5, 0.8):
            target = low + fraction * (high - low)
            band = [ix for ix in every if abs(predicted[ix] / target - 1) <= 0.02]
            derived = near_target(expected, log_probs, target, 0.02)
            assert abs(predicted[derived] / target - 1) <= 0.02
            assert log_probability(log_probs, derived) == pytest.approx(
                max(log_probability(log_probs, ix) for ix in band), abs=1e-12)
            if abs(predicted[mode] / target - 1) <= 0.02:
                assert derived == mode
            else:
                missed_by_the_mode += 1
    assert missed_by_the_mode >= 5  # the check above is about the band, not about the mode


def test_the_hull_fallback_is_the_most_probable_at_its_latency(lut_setup):
    """With the list cut at one architecture, the answer comes from the trade-off hull: none of
    the whole space is both more probable and on the same side of it (as fast, or as slow)."""
    from edgenas.supernet.derivation import log_probability, near_target

    space, lut, expected, _ = lut_setup
    every = _every(space)
    predicted = {ix: lut.predict(space.arch_from_indices(ix)) for ix in every}
    low, high = expected.latency_range()
    log_probs = _random_log_probs(space, 1)
    mode = tuple(int(p.argmax()) for p in log_probs)
    checked = 0
    for target in (low + 0.05 * (high - low), high - 0.05 * (high - low)):
        if abs(predicted[mode] / target - 1) <= 0.1:  # the mode itself would be the answer
            continue
        derived = near_target(expected, log_probs, target, 0.02, limit=1)
        assert derived != mode
        faster = predicted[mode] > target
        rivals = [ix for ix in every if (predicted[ix] <= predicted[derived] if faster
                                        else predicted[ix] >= predicted[derived])]
        assert log_probability(log_probs, derived) == pytest.approx(
            max(log_probability(log_probs, ix) for ix in rivals), abs=1e-12)
        assert abs(predicted[derived] / target - 1) < abs(predicted[mode] / target - 1)
        checked += 1
    assert checked >= 1  # the two targets lie far apart: the mode is near one at most


def test_a_gated_path_computes_what_the_path_computes(lut_setup):
    from edgenas.supernet.network import Supernet
    from edgenas.supernet.search_model import GradientSearchModel

    space, _, expected, _ = lut_setup
    torch.manual_seed(0)
    model = GradientSearchModel(Supernet(space), expected, target_ms=1.0).eval()
    indices, gates = model.distribution.sample(1.0)
    images = torch.randn(2, 1, 28, 28)
    gated = model.forward_gated(indices, gates, images)
    assert torch.equal(gated, model.supernet.forward_path(space.blocks_from_indices(indices), images))
    gated.sum().backward()  # the CE's route to the logits: the drawn choices get a gradient
    grads = [p.grad for p in model.distribution.logits]
    assert all(g is not None for g in grads)  # every decision is on the CE's route (a saturated draw may give 0)
    assert sum(bool(g.abs().sum() > 0) for g in grads) >= len(grads) // 2


# ---- the search ----------------------------------------------------------------------------------
def test_the_temperature_falls_every_step_from_start_to_end_after_the_warm_up():
    from edgenas.supernet.gradient_search import SearchSettings

    settings = SearchSettings(target_ms=1.0, epochs=3, warmup_epochs=1, tau_start=5.0, tau_end=0.3)
    taus = [settings.tau(step, 10) for step in range(30)]
    assert taus[:11] == [5.0] * 11  # the warm-up's ten steps, then the first architecture step
    assert taus[29] == pytest.approx(0.3)
    ratios = [a / b for a, b in zip(taus[10:], taus[11:])]
    assert min(ratios) > 1 and max(ratios) == pytest.approx(min(ratios))  # geometric, a new temperature every step
    one_epoch = SearchSettings(target_ms=1.0, epochs=1, warmup_epochs=0)
    assert one_epoch.tau(0, 1) == one_epoch.tau_end  # a single architecture step draws at the end temperature


def test_a_tiny_search_on_digits_lowers_the_validation_loss_and_moves_expected_latency_to_the_target(
        lut_setup, tmp_path, capsys):
    low, high = lut_setup[2].latency_range()
    target = low + 0.1 * (high - low)
    out = tmp_path / "run"
    code, stdout, err = run_cli([*_cli(lut_setup, "--subset", "400", "--epochs", "4", "--warmup-epochs", "1",
                                       "--batch-size", "32", "--target-ms", f"{target:.6f}", "--out", out,
                                       "--json")], capsys)
    assert code == 0, err
    result = json.loads(stdout)
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    searched = [r for r in history if r["searching"]]
    assert searched[-1]["val_ce"] < searched[0]["val_ce"]
    assert 0.3 < searched[0]["tau"] < 5.0 and history[-1]["tau"] == pytest.approx(0.3)  # annealed per step
    uniform = history[0]["expected_ms"]  # after the warm-up the logits are still zero
    assert abs(result["expected_ms"] - target) < abs(uniform - target)
    assert result["arch"] == history[-1]["arch"] and result["measured_ms"] > 0
    assert result["derive"] == "near-target" and abs(result["predicted_ms"] / target - 1) <= 0.02
    if result["most_probable_arch"] != result["arch"]:
        assert result["most_probable_measured_ms"] > 0
    assert (out / "arch_history.png").stat().st_size > 0 and (out / "search.pt").exists()
    assert not (out / "resume.pt").exists()


@pytest.mark.slow
def test_gradient_search_resumes_bit_exactly_after_kill_9(lut_setup, tmp_path):
    from killstorm import kill_storm, run

    low, high = lut_setup[2].latency_range()
    args = _cli(lut_setup, "--subset", "300", "--epochs", "3", "--warmup-epochs", "1", "--batch-size", "32",
                "--target-ms", f"{(low + high) / 2:.6f}", "--quiet")
    plain, killed = tmp_path / "plain", tmp_path / "killed"
    first = run([*args, "--out", plain])
    assert first.returncode == 0, first.stderr
    landed = kill_storm([*args, "--out", killed], kills=2, seed=0,
                        ready=lambda: (killed / "resume.pt").exists(), max_delay=1.0)
    assert landed >= 1
    finished = run([*args, "--out", killed])
    assert finished.returncode == 0, finished.stderr
    a = torch.load(plain / "search.pt", weights_only=True)["state_dict"]
    b = torch.load(killed / "search.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def strip(path):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in json.loads(path.read_text())]

    assert strip(plain / "history.json") == strip(killed / "history.json")


# ---- bad input ------------------------------------------------------------------------------------
def _one_line_exit_2(code, err, *words):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]


def test_a_target_outside_the_space_s_range_names_the_range(lut_setup, tmp_path, capsys):
    low, high = lut_setup[2].latency_range()
    out = tmp_path / "run"
    code, _, err = run_cli([*_cli(lut_setup, "--target-ms", f"{2 * high:.6f}", "--out", out)], capsys)
    _one_line_exit_2(code, err, "outside", f"{low:.3f} to {high:.3f} ms")
    assert not out.exists()


def test_a_lut_whose_correction_belongs_to_another_space_is_refused(lut_setup, tmp_path, capsys):
    space, lut, expected, cache = lut_setup
    foreign = tmp_path / "foreign.sqlite"
    for suffix in ("", "-wal", "-shm"):  # the cache is SQLite in WAL mode, open in the fixture
        if cache.with_name(cache.name + suffix).exists():
            shutil.copy(cache.with_name(cache.name + suffix), foreign.with_name(foreign.name + suffix))
    store = LatencyCache(foreign)
    try:
        correction = store.get_correction(lut.name, lut.where)
        store.put_correction(lut.name, lut.where, {**correction, "archs": ["ir_r1_k3_s2_e6_c32 ir_r2_k3_s2_e6_c64"]})
    finally:
        store.close()
    low, high = expected.latency_range()
    out = tmp_path / "run"
    args = _cli(lut_setup, "--target-ms", f"{(low + high) / 2:.6f}", "--out", out)
    args[args.index("--latency-cache") + 1] = foreign
    code, _, err = run_cli(args, capsys)
    _one_line_exit_2(code, err, "another space")
    assert not out.exists()


def test_a_supernet_of_another_configuration_is_refused(lut_setup, tmp_path, capsys):
    low, high = lut_setup[2].latency_range()
    supernet = tmp_path / "supernet"
    code, _, err = run_cli(["supernet", "train", "--space-preset", "demo", "--space-option", "stages=c8_r1_s2",
                            "--dataset", "digits", "--subset", "60", "--epochs", "1", "--batch-size", "30",
                            "--train-device", "cpu", "--out", supernet, "--quiet"], capsys)
    assert code == 0, err
    out = tmp_path / "run"
    code, _, err = run_cli([*_cli(lut_setup, "--target-ms", f"{(low + high) / 2:.6f}", "--supernet", supernet,
                                  "--out", out)], capsys)
    _one_line_exit_2(code, err, "another configuration", "space choices")
    assert not out.exists()


def test_a_resume_file_of_other_settings_is_refused(lut_setup, tmp_path, capsys):
    from edgenas.supernet.gradient_search import RESUME

    low, high = lut_setup[2].latency_range()
    out = tmp_path / "run"
    base = _cli(lut_setup, "--subset", "200", "--epochs", "3", "--batch-size", "50", "--out", out, "--quiet")
    from edgenas.cli.main import build_parser
    from edgenas.cli.supernet import search_settings_from_args
    from edgenas.supernet.gradient_search import run_search

    settings = search_settings_from_args(build_parser().parse_args(
        list(map(str, [*base, "--target-ms", f"{(low + high) / 2:.6f}"]))))
    run_search(out, settings, progress=False, stop_after=1)  # what a kill after epoch 1 leaves
    assert (out / RESUME).exists()
    code, _, err = run_cli([*base, "--target-ms", f"{low + 0.9 * (high - low):.6f}"], capsys)
    _one_line_exit_2(code, err, "belongs to another", "target_ms")


@pytest.mark.parametrize("flags, words", [
    (["--warmup-epochs", "3", "--epochs", "3"], ["--warmup-epochs"]),
    (["--space-option", "kernels=three"], ["kernels"]),
    (["--penalty", "square"], ["--penalty"]),
    (["--derive", "nearest"], ["--derive"]),
    (["--derive-tolerance", "1.5"], ["--derive-tolerance"]),
])
def test_bad_flags_are_one_line_and_write_nothing(lut_setup, tmp_path, capsys, flags, words):
    out = tmp_path / "run"
    code, _, err = run_cli([*_cli(lut_setup, "--target-ms", "0.2", "--out", out, *flags)], capsys)
    assert code == 2 and not out.exists(), err
    assert all(w in err for w in words), err
