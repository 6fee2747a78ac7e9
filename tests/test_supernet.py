"""The weight-sharing supernet: paths and the networks extracted from them, what the elastic
dimensions share, path sampling, training with a bit-exact resume after kill -9, the one-shot
evaluator through the store with a strategy, `train --init-from`, and bad input."""

from __future__ import annotations

import random

import pytest
import torch

from conftest import run_cli
from edgenas.errors import UserError
from edgenas.spaces.blockstrings import decode_arch, encode_arch
from edgenas.spaces.mnas_choices import space_choices
from edgenas.supernet.network import Supernet
from edgenas.supernet.sampling import PathSampler
from edgenas.supernet.training import RESUME, WEIGHTS, SupernetSettings, space_for, train_supernet
from edgenas.training.loop import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny trainings on one thread

# The demo preset, with a pooling skip so that the skip's projection is shared too.
DEMO = space_choices("demo", ["skips=none,identity,pool"])
TINY = ["--space-preset", "demo", "--space-option", "stages=c8_r1_s2,c16_r2_s2", "--space-option",
        "ops=dsconv,mbconv3,mbconv6"]
TINY_SETTINGS = dict(dataset="digits", subset=300, space_preset="demo",
                     space_options=["stages=c8_r1_s2,c16_r2_s2", "ops=dsconv,mbconv3,mbconv6"],
                     train=TrainConfig(epochs=2, batch_size=32, lr=0.05), device="cpu")


def _space(choices=DEMO):
    return space_for(choices, (3, 16, 16), 5)


def _replace_block(arch: str, block: int, **fields) -> str:
    from dataclasses import replace

    blocks = decode_arch(arch)
    blocks[block] = replace(blocks[block], **fields)
    return encode_arch(blocks)


# ---- paths ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("sharing", ["shared", "separate"])
def test_every_path_computes_exactly_what_its_extracted_network_computes(sharing):
    space = _space()
    torch.manual_seed(0)
    supernet = Supernet(space, sharing).eval()
    sampler = PathSampler(space, "sandwich", random_paths=6, seed=1)
    images = torch.randn(4, 3, 16, 16)
    for indices in sampler.paths():
        arch = space.arch_from_indices(indices)
        model = supernet.extract(arch).eval()
        reference = space.build(arch)  # the stand-alone network of the string: same modules, same shapes
        assert [(n, p.shape) for n, p in model.named_parameters()] == \
               [(n, p.shape) for n, p in reference.named_parameters()]
        with torch.no_grad():
            assert torch.equal(supernet.forward_path(arch, images), model(images)), arch
            assert not torch.allclose(model(images), reference.eval()(images))  # inherited, not fresh


def test_shared_weights_follow_the_elastic_dimensions():
    """A 3x3 kernel is the centre of the 5x5, an MBConv3 the first half of the MBConv6's expansion,
    a narrower block the first channels of the wider; with separate weights none of that holds."""
    space = _space()
    torch.manual_seed(0)
    shared, separate = Supernet(space, "shared"), Supernet(space, "separate")
    wide5 = "ds_r1_k3_s2_c16 ir_r2_k5_s2_e6_c24 ir_r2_k3_s2_e6_c40 ir_r2_k3_s1_e6_c80"
    wide3 = _replace_block(wide5, 1, kernel=3)
    narrow = _replace_block(wide5, 1, out_channels=12)
    half = _replace_block(wide5, 1, expansion=3.0)
    for arch in (wide5, wide3, narrow, half):
        space.parse(arch)  # each lies in the space
    k5, k3 = (shared.extract(a).stages[1][0].body.depthwise[0].weight for a in (wide5, wide3))
    assert k5.shape[-1] == 5 and k3.shape[-1] == 3
    assert torch.equal(k3, k5[:, :, 1:4, 1:4])
    wide_project = shared.extract(wide5).stages[1][0].body.project[0].weight
    assert torch.equal(shared.extract(narrow).stages[1][0].body.project[0].weight, wide_project[:12])
    e6 = shared.extract(wide5).stages[1][0].body.expand[0].weight  # (16 * 6, 16, 1, 1)
    e3 = shared.extract(half).stages[1][0].body.expand[0].weight  # (16 * 3, 16, 1, 1)
    assert torch.equal(e3, e6[: e3.shape[0]])
    s5, s3 = (separate.extract(a).stages[1][0].body.depthwise[0].weight for a in (wide5, wide3))
    assert not torch.equal(s3, s5[:, :, 1:4, 1:4])


def test_a_training_step_on_a_path_moves_only_that_path_s_weights():
    space = _space()
    torch.manual_seed(0)
    supernet = Supernet(space, "shared").train()
    arch = "ds_r1_k3_s2_c8 ds_r1_k3_s2_c12 ds_r1_k3_s2_c20 ds_r1_k3_s1_c40"  # dsconv everywhere, shallowest
    space.parse(arch)
    before = {name: p.detach().clone() for name, p in supernet.named_parameters()}
    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(supernet.forward_path(arch, torch.randn(8, 3, 16, 16)),
                                             torch.arange(8) % 5)
    loss.backward()
    optimizer.step()
    moved = {name for name, p in supernet.named_parameters() if not torch.equal(p, before[name])}
    assert "layers.0.bodies.ds.depthwise.0.weight" in moved and "classifier.weight" in moved
    assert not any(".bodies.ir." in name for name in moved)  # no MBConv on this path
    second_layer_of_block2 = supernet.offsets[1] + 1  # block 2 keeps 1 of its 3 layers
    assert not any(name.startswith(f"layers.{second_layer_of_block2}.") for name in moved)
    # and the narrow path trained only the first channels of the shared weights
    depthwise = supernet.layers[supernet.offsets[1]].bodies["ds"].depthwise[0].weight
    assert not torch.equal(depthwise[:8], before[f"layers.{supernet.offsets[1]}.bodies.ds.depthwise.0.weight"][:8])
    assert torch.equal(depthwise[8:], before[f"layers.{supernet.offsets[1]}.bodies.ds.depthwise.0.weight"][8:])


def test_an_architecture_outside_the_space_names_the_field():
    supernet = Supernet(_space())
    with pytest.raises(UserError, match="kernel k7"):
        supernet.blocks("ds_r1_k7_s2_c8 ds_r1_k3_s2_c12 ds_r1_k3_s2_c20 ds_r1_k3_s1_c40")


# ---- sampling ------------------------------------------------------------------------------------
def test_uniform_and_sandwich_sampling_reach_every_choice():
    space = _space()
    for sampling in ("uniform", "sandwich"):
        sampler = PathSampler(space, sampling, random_paths=1, seed=0)
        seen = [set() for _ in space.decisions]
        for _ in range(150):
            for path in sampler.paths():
                for decision, index in enumerate(path):
                    seen[decision].add(index)
        missing = [d.name for d, s in zip(space.decisions, seen) if len(s) < len(d.choices)]
        assert not missing, f"{sampling} never drew every choice of {missing}"


def test_sandwich_paths_are_largest_then_smallest_then_random():
    space = _space()
    largest, smallest, *rest = PathSampler(space, "sandwich", random_paths=2, seed=0).paths()
    assert len(rest) == 2
    big = space.blocks_from_indices(largest)
    small = space.blocks_from_indices(smallest)
    # demo: ops dsconv/mbconv3/mbconv6, kernels 3/5, se 0/0.25, widths 0.5/1.0, layers base -1..+1
    assert all((b.block_type, b.expansion, b.kernel, b.se_ratio) == ("ir", 6.0, 5, 0.25) for b in big)
    assert [b.out_channels for b in big] == [16, 24, 40, 80] and [b.repeats for b in big] == [2, 3, 3, 3]
    assert all((b.block_type, b.kernel, b.se_ratio) == ("ds", 3, 0.0) for b in small)
    assert [b.out_channels for b in small] == [8, 12, 20, 40] and [b.repeats for b in small] == [1, 1, 1, 1]


# ---- training ------------------------------------------------------------------------------------
def test_sandwich_training_distils_the_smaller_paths_from_the_largest():
    from edgenas.supernet.training import SupernetLoss

    teacher = torch.tensor([[2.0, 0.0, -1.0]])
    labels = torch.tensor([1])  # the label disagrees with the teacher (class 0)
    gradients = []
    for weight in (0.0, 1.0):
        student = torch.tensor([[0.0, 1.0, 0.0]], requires_grad=True)
        SupernetLoss(distill_weight=weight)((teacher, student), labels).backward()
        gradients.append(student.grad[0])
    # distillation pulls the student toward the teacher's class, on top of the label's pull
    assert gradients[1][0] < gradients[0][0] and gradients[1][1] > gradients[0][1]
    student = torch.tensor([[0.0, 1.0, 0.0]])
    expected = (torch.nn.functional.cross_entropy(teacher, labels) + torch.nn.functional.cross_entropy(student, labels)
                - 0.5 * (teacher.softmax(1) * student.log_softmax(1)).sum()) / 2  # the mean over the two paths
    assert torch.isclose(SupernetLoss(distill_weight=0.5)((teacher, student), labels), expected)


def test_supernet_training_resumes_bit_exactly_after_kill_9(tmp_path):
    from killstorm import kill_storm, run

    args = ["supernet", "train", *TINY, "--dataset", "digits", "--subset", "300", "--epochs", "3", "--batch-size", "32",
            "--sampling", "sandwich", "--random-paths", "1", "--train-device", "cpu", "--quiet"]
    plain, killed = tmp_path / "plain", tmp_path / "killed"
    assert run([*args, "--out", plain]).returncode == 0
    landed = kill_storm([*args, "--out", killed], kills=2, seed=0,
                        ready=lambda: (killed / RESUME).exists(), max_delay=0.5)
    assert landed >= 1
    finished = run([*args, "--out", killed])
    assert finished.returncode == 0, finished.stderr
    a = torch.load(plain / WEIGHTS, weights_only=True)["state_dict"]
    b = torch.load(killed / WEIGHTS, weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (killed / RESUME).exists()


@pytest.fixture(scope="module")
def tiny_supernet(tmp_path_factory):
    out = tmp_path_factory.mktemp("supernet")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_supernet(out, SupernetSettings(**TINY_SETTINGS), progress=False)
    finally:
        torch.set_num_threads(threads)
    return out


def test_oneshot_search_with_ppo_goes_through_the_store_and_resumes(tiny_supernet, tmp_path, capsys):
    from edgenas.evaluators.oneshot import OneShotEvaluator
    from edgenas.search.store import Store

    out = tmp_path / "run"
    search = ["search", "--space", "mnas", "--evaluator", "oneshot", "--supernet", tiny_supernet, "--strategy", "ppo",
              "--objective", "mnas-abs", "--target-ms", "0.05", "--latency-mode", "measure", "--latency-runs", "3",
              "--latency-warmup", "1", "--latency-min-seconds", "0", "--latency-cache", tmp_path / "latency.sqlite",
              "--out", out, "--quiet"]
    code, _out, err = run_cli([*search, "--budget", "5"], capsys)
    assert code == 0, err
    with Store.open_existing(out) as store:
        first = store.trials()
        config = store.config
    assert len(first) == 5 and all(t.status == "ok" for t in first)
    assert config["evaluator"]["evaluator"] == "oneshot" and config["objective"]["objective"] == "mnas-abs"
    scorer = OneShotEvaluator(tiny_supernet)  # a fresh evaluator, candidates in another order
    for trial in reversed(first):
        assert scorer.evaluate(trial.arch).accuracy == trial.accuracy
        assert trial.reward == pytest.approx(trial.accuracy - 0.07 * abs(trial.latency_ms / 0.05 - 1))
    code, _out, err = run_cli([*search, "--budget", "7"], capsys)
    assert code == 0, err
    with Store.open_existing(out) as store:
        trials = store.trials()
    assert len(trials) == 7 and [t.arch for t in trials[:5]] == [t.arch for t in first]


def test_train_init_from_starts_from_the_inherited_weights(tiny_supernet, tmp_path):
    from edgenas.data import load_dataset
    from edgenas.supernet.training import load_supernet
    from edgenas.training.final import train_final

    supernet, _ = load_supernet(tiny_supernet)
    arch = supernet.space.sample(random.Random(5))
    data = load_dataset("digits", "train").subset(64, 0)
    config = TrainConfig(epochs=1, batch_size=32, lr=1e-9, weight_decay=0.0, momentum=0.0)
    inherited = supernet.extract(arch).state_dict()
    started, recipe = train_final(arch, data, data, config, device="cpu", progress=False, init_from=tiny_supernet)
    fresh, _ = train_final(arch, data, data, config, device="cpu", progress=False)
    weights = [k for k in inherited if k.endswith("weight")]
    assert all(torch.allclose(started.state_dict()[k], inherited[k], atol=1e-6) for k in weights)
    assert not all(torch.allclose(fresh.state_dict()[k], inherited[k], atol=1e-3) for k in weights)
    assert recipe["init_from"] == str(tiny_supernet)


# ---- bad input -----------------------------------------------------------------------------------
def _one_line(code, err, phrase):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err and phrase in lines[0], err


def test_bad_supernet_input_is_one_line_and_writes_nothing(tiny_supernet, tmp_path, capsys):
    out = tmp_path / "out"
    search = ["search", "--space", "mnas", "--evaluator", "oneshot", "--strategy", "random", "--budget", "2",
              "--out", out]
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / WEIGHTS).write_bytes(b"half a file")
    half = tmp_path / "half"
    half.mkdir()
    (half / RESUME).write_bytes(b"x")  # a training killed before it finished
    arch = "ds_r1_k3_s2_c8 ds_r1_k3_s2_c12"
    cases = [
        ([*search], "needs --supernet DIR"),
        ([*search, "--supernet", tiny_supernet, "--space-option", "kernels=3"], "describe another space"),
        ([*search, "--supernet", tiny_supernet, "--dataset", "digits8"], "was trained on 'digits'"),
        ([*search, "--supernet", corrupt], "not a readable supernet"),
        ([*search, "--supernet", half], "holds no trained supernet"),
        (["train", arch, "--init-from", corrupt, "--out", out, "--epochs", "1"], "not a readable supernet"),
        (["train", "ds_r1_k7_s2_c8 ds_r1_k3_s2_c12", "--init-from", tiny_supernet, "--out", out, "--epochs", "1"],
         "kernel k7"),
        (["supernet", "train", "--space-option", "kernels=4", "--out", out], "kernels must be odd"),
        (["supernet", "train", "--lr-warmup", "1.5", "--out", out], "warm-up is a share"),
    ]
    for argv, phrase in cases:
        code, _out, err = run_cli(argv, capsys)
        _one_line(code, err, phrase)
        assert not out.exists(), argv


def test_the_advice_for_a_corrupt_supernet_is_a_command_that_replaces_it(tmp_path, capsys):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / WEIGHTS).write_bytes(b"half a file")
    search = ["search", "--space", "mnas", "--evaluator", "oneshot", "--strategy", "random", "--budget", "1",
              "--supernet", corrupt, "--out", tmp_path / "s"]
    code, _out, err = run_cli(search, capsys)
    _one_line(code, err, "not a readable supernet")
    advice = err.split("train a new one: edgenas ")[1].split()
    assert advice == ["supernet", "train", "--out", str(corrupt), "--force"], err
    tiny = ["--dataset", "digits", "--subset", "300", "--max-steps", "2", "--batch-size", "32",
            "--train-device", "cpu", "--quiet"]
    code, _out, err = run_cli([*advice, *TINY, *tiny], capsys)
    assert code == 0, err
    from edgenas.supernet.training import load_supernet

    load_supernet(corrupt)  # readable now


def test_supernet_train_passes_its_warm_up_to_the_training():
    from edgenas.cli.main import build_parser
    from edgenas.cli.supernet import settings_from_args

    def warmup(*flags: str) -> float:
        return settings_from_args(build_parser().parse_args(["supernet", "train", *flags, "--out", "x"])).train.lr_warmup

    assert warmup("--lr-warmup", "0.3") == 0.3
    assert warmup("--lr-warmup", "0") == 0.0
    assert warmup() == SupernetSettings().train.lr_warmup


def test_a_resume_file_of_other_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "sn"
    args = ["supernet", "train", *TINY, "--dataset", "digits", "--subset", "300", "--max-steps", "2",
            "--batch-size", "32", "--train-device", "cpu", "--quiet", "--out", out]
    out.mkdir()
    from edgenas.training.resume import EpochCheckpoint

    EpochCheckpoint(out / RESUME, {"job": "edgenas supernet train", "seed": 99}).save({})
    code, _out, err = run_cli(args, capsys)
    _one_line(code, err, "belongs to another supernet training")
    assert not (out / WEIGHTS).exists()


def test_a_failing_candidate_is_a_failed_trial(tiny_supernet):
    from edgenas.evaluators.oneshot import OneShotEvaluator

    result = OneShotEvaluator(tiny_supernet).evaluate("ds_r1_k3_s2_c8 ds_r1_k3_s2_c99")
    assert result.status == "failed" and "width c99" in result.error


def test_folding_batchnorm_for_scoring_keeps_the_function_and_drops_every_norm():
    from edgenas.evaluators.oneshot import fold_batchnorm

    space = _space()
    torch.manual_seed(0)
    model = Supernet(space).extract(space.sample(random.Random(2)))
    model.train()
    model(torch.randn(16, 3, 16, 16))  # running statistics that are not the initial ones
    model.eval()
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        before = model(images)
        fold_batchnorm(model)
        after = model(images)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert torch.allclose(before, after, atol=1e-5) and not torch.equal(before, torch.zeros_like(before))


def test_scoring_runs_activations_in_place_only_where_nothing_else_reads_their_input():
    from edgenas.blocks import ConvBnAct
    from edgenas.evaluators.oneshot import activations_in_place

    space = _space()
    torch.manual_seed(0)
    model = Supernet(space).extract(space.sample(random.Random(2))).eval()
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        before = model(images)
        activations_in_place(model)
        after = model(images)
    after_conv = [block[-1] for block in model.modules() if isinstance(block, ConvBnAct)
                  and isinstance(block[-1], torch.nn.ReLU)]
    assert after_conv and all(act.inplace for act in after_conv)
    assert torch.equal(before, after)
    preact = activations_in_place(ConvBnAct(4, 4, 3, preact=True))  # act -> conv -> BN reads the block's input
    assert not preact[0].inplace


def test_supernet_check_ranks_one_shot_against_proxy_training(tiny_supernet, capsys):
    import json

    from scipy.stats import kendalltau

    from edgenas.evaluators.oneshot import OneShotEvaluator

    code, out, err = run_cli(["supernet", "check", tiny_supernet, "-n", "3", "--proxy-epochs", "1", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    rows = result["rows"]
    assert len(rows) == 3 and len({r["arch"] for r in rows}) == 3 and result["scored"] == 3
    scorer = OneShotEvaluator(tiny_supernet)
    assert [scorer.evaluate(r["arch"]).accuracy for r in rows] == [r["oneshot_accuracy"] for r in rows]
    tau = kendalltau([r["oneshot_accuracy"] for r in rows], [r["proxy_accuracy"] for r in rows])[0]
    assert result["kendall_tau"] == pytest.approx(tau, nan_ok=True)
    code, _out, err = run_cli(["supernet", "check", tiny_supernet, "-n", "1"], capsys)
    assert code == 2 and "at least 2" in err
