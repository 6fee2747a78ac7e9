"""DARTS engine: ops, mixed op, supernet fast path, second-order gradient, derivation, genotypes,
evaluation network. Everything tiny (4 channels, 3 cells, 8-16 px, batch 2-3), one thread."""

from __future__ import annotations

import pytest
import torch

from edgenas.darts.architect import Architect
from edgenas.darts.eval_model import EvalNetwork, count_params, drop_path
from edgenas.darts.fused import phase_merge, phase_split
from edgenas.darts.genotypes import DARTS_V2, Genotype, derive_genotype
from edgenas.darts.ops import PRIMITIVES, make_op
from edgenas.darts.search_model import MixedOp, SearchNetwork, SupernetConfig
from edgenas.errors import UserError

TINY = SupernetConfig(channels=4, layers=3, num_classes=5)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny trainings on one thread


def _tiny_net(fast: bool, recompute: bool = False, seed: int = 0, config: SupernetConfig = TINY) -> SearchNetwork:
    torch.manual_seed(seed)
    net = SearchNetwork(config, fast=fast, recompute=recompute).double()
    with torch.no_grad():  # alphas far from uniform, so every op's weight matters
        net.alphas_normal.normal_()
        net.alphas_reduce.normal_()
    return net


@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_op_equals_explicit_weighted_sum(stride):
    torch.manual_seed(0)
    mixed = MixedOp(4, stride).double()
    x = torch.randn(3, 4, 8, 8, dtype=torch.double, requires_grad=True)
    weights = torch.softmax(torch.randn(len(PRIMITIVES), dtype=torch.double), 0).requires_grad_()
    explicit = sum(weights[k] * op(x) for k, op in enumerate(mixed.ops))  # each op's own forward
    fast = mixed(x, weights, fast=True)
    assert torch.allclose(fast, explicit, atol=1e-12)
    grad = torch.randn_like(fast)
    g_explicit = torch.autograd.grad(explicit, [x, weights, *mixed.parameters()], grad)
    g_fast = torch.autograd.grad(mixed(x, weights, fast=True), [x, weights, *mixed.parameters()], grad)
    for a, b in zip(g_explicit, g_fast):
        assert torch.allclose(a, b, atol=1e-10)


def test_none_op_is_zero_and_edge_of_only_none():
    mixed = MixedOp(4, 2, primitives=("none",))
    out = mixed(torch.randn(2, 4, 8, 8), torch.ones(1))
    assert out.shape == (2, 4, 4, 4) and not out.any()


def test_phase_split_round_trips_and_dilated_conv_on_phases():
    x = torch.randn(2, 3, 8, 6).contiguous(memory_format=torch.channels_last)
    assert torch.equal(phase_merge(phase_split(x, 2), 2), x)
    assert torch.equal(phase_split(x, 2)[2:4], x[:, :, 0::2, 1::2])  # phase (0, 1)


def test_fast_supernet_equals_reference_with_recompute():
    reference, fast = _tiny_net(False), _tiny_net(True, recompute=True)
    fast.load_state_dict(reference.state_dict())
    x = torch.randn(3, 3, 8, 8, dtype=torch.double)
    y = torch.randint(0, 5, (3,))
    loss_ref, loss_fast = reference.loss(x, y), fast.loss(x, y)
    assert torch.allclose(loss_ref, loss_fast, atol=1e-12)
    g_ref = torch.autograd.grad(loss_ref, list(reference.parameters()))
    g_fast = torch.autograd.grad(loss_fast, list(fast.parameters()))
    for a, b in zip(g_ref, g_fast):
        assert torch.allclose(a, b, atol=1e-10)
    # Recomputing an edge in backward leaves BN running statistics as one forward pass does.
    for a, b in zip(reference.buffers(), fast.buffers()):
        assert torch.allclose(a.double(), b.double(), atol=1e-12)


def _val_after_virtual_step(net, alphas, train, val, eta, momentum_buffers, decay, momentum):
    """L_val(w - eta (momentum buf + grad_w L_train(w, a) + decay w), a), computed from scratch
    with torch.func (no architect code), as a function of the alphas."""
    from torch.func import functional_call

    names = [n for n, _ in net.named_weight_parameters()]
    weights = dict(net.named_weight_parameters())
    params = {**weights, "alphas_normal": alphas[0], "alphas_reduce": alphas[1]}
    logits = functional_call(net, params, (train[0],))
    grads = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, train[1]), [weights[n] for n in names])
    stepped = {n: weights[n] - eta * (momentum * momentum_buffers[n] + g + decay * weights[n])
               for n, g in zip(names, grads)}
    out = functional_call(net, {**stepped, "alphas_normal": alphas[0], "alphas_reduce": alphas[1]}, (val[0],))
    return torch.nn.functional.cross_entropy(out, val[1])


SMALLER = SupernetConfig(channels=2, layers=3, num_classes=5, steps=2, multiplier=2)


def test_second_order_gradient_matches_finite_differences():
    net = _tiny_net(True, recompute=True, seed=1, config=SMALLER)
    torch.manual_seed(1)
    train = (torch.randn(2, 3, 8, 8, dtype=torch.double), torch.tensor([0, 3]))
    val = (torch.randn(2, 3, 8, 8, dtype=torch.double), torch.tensor([1, 4]))
    optimizer = torch.optim.SGD(net.weight_parameters(), lr=0.1, momentum=0.9, weight_decay=3e-4)
    buffers = {}
    for name, p in net.named_weight_parameters():  # a momentum buffer, as after earlier steps
        buffers[name] = 0.1 * torch.randn_like(p)
        optimizer.state[p]["momentum_buffer"] = buffers[name].clone()
    eta = 0.2
    # The paper's eps = 0.01 / ||v|| is coarse on a network this small (its loss is sharply
    # curved at a 0.01 step); a smaller scale shows the unrolled math itself is exact.
    assert Architect(net, optimizer, order=2).fd_scale == 0.01
    second = Architect(net, optimizer, order=2, fd_scale=1e-6).hypergradient(train, val, eta)[0]
    first = Architect(net, optimizer, order=1).hypergradient(train, val, eta)[0]
    alphas = [a.detach() for a in net.arch_parameters()]
    generator = torch.Generator().manual_seed(3)
    h = 1e-6
    for _ in range(2):
        direction = [torch.randn(a.shape, generator=generator, dtype=torch.double) for a in alphas]
        values = []
        for sign in (1.0, -1.0):
            moved = [a + sign * h * d for a, d in zip(alphas, direction)]
            loss = _val_after_virtual_step(net, moved, train, val, eta, buffers, 3e-4, 0.9)
            values.append(float(loss.detach()))
        numeric = (values[0] - values[1]) / (2 * h)
        analytic_2 = float(sum((g * d).sum() for g, d in zip(second, direction)))
        analytic_1 = float(sum((g * d).sum() for g, d in zip(first, direction)))
        assert abs(analytic_2 - numeric) < 5e-3 * max(1.0, abs(numeric))
        # The implicit term matters here: first order misses it by far more than the tolerance.
        assert abs(analytic_1 - numeric) > 10 * abs(analytic_2 - numeric)
    # The architect restored the weights exactly after its in-place virtual steps.
    fresh = _tiny_net(True, seed=1, config=SMALLER)
    for a, b in zip(fresh.weight_parameters(), net.weight_parameters()):
        assert torch.equal(a, b)


def test_derivation_from_hand_set_alphas():
    steps, ops = 4, len(PRIMITIVES)
    idx = {name: k for k, name in enumerate(PRIMITIVES)}
    normal = torch.zeros(14, ops)
    reduce = torch.zeros(14, ops)
    # node 2 (edges 0, 1): both kept; edge 0 is strongest at `none`, which never wins.
    normal[0, idx["none"]] = 9.0
    normal[0, idx["sep_conv_5x5"]] = 2.0
    normal[1, idx["dil_conv_3x3"]] = 3.0
    # node 3 (edges 2, 3, 4): inputs 2 (node 2) and 0 are strongest, in that order.
    normal[4, idx["skip_connect"]] = 5.0
    normal[2, idx["max_pool_3x3"]] = 4.0
    normal[3, idx["avg_pool_3x3"]] = 1.0
    # nodes 4 and 5: inputs 3 and 1, then 4 and 2.
    normal[5 + 3, idx["sep_conv_3x3"]] = 3.0
    normal[5 + 1, idx["dil_conv_5x5"]] = 2.0
    normal[9 + 4, idx["sep_conv_3x3"]] = 3.0
    normal[9 + 2, idx["skip_connect"]] = 2.0
    reduce[:, idx["max_pool_3x3"]] = 1.0  # ties everywhere: lowest inputs, in order
    genotype = derive_genotype(normal, reduce, steps)
    # Strength is the softmax weight: `none` at 9 leaves edge 0's best real op weak, so edge 1
    # comes first (DARTS lists a node's two edges strongest first).
    assert genotype.normal == (
        ("dil_conv_3x3", 1), ("sep_conv_5x5", 0),
        ("skip_connect", 2), ("max_pool_3x3", 0),
        ("sep_conv_3x3", 3), ("dil_conv_5x5", 1),
        ("sep_conv_3x3", 4), ("skip_connect", 2),
    )
    assert genotype.reduce == (("max_pool_3x3", 0), ("max_pool_3x3", 1)) * 4
    net = SearchNetwork(SupernetConfig(channels=4, layers=3))
    with torch.no_grad():
        net.alphas_normal.copy_(normal)
        net.alphas_reduce.copy_(reduce)
    assert net.genotype() == genotype


def test_genotype_string_round_trips():
    text = str(DARTS_V2)
    assert Genotype.parse(text) == DARTS_V2
    assert str(Genotype.parse(text)) == text
    assert Genotype.parse("DARTS_V2") == DARTS_V2
    original_repr = (
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
        "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
        "('dil_conv_3x3', 2)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), "
        "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
        "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))"
    )
    assert Genotype.parse(original_repr) == DARTS_V2


@pytest.mark.parametrize("text, fragment", [
    ("normal=sep_conv_3x3~0 reduce=max_pool_3x3~0,skip_connect~1", "two 'op~input' pairs"),
    ("normal=conv_7x7~0,sep_conv_3x3~1 reduce=max_pool_3x3~0,skip_connect~1", "unknown DARTS op"),
    ("normal=sep_conv_3x3~2,sep_conv_3x3~1 reduce=max_pool_3x3~0,skip_connect~1", "does not exist yet"),
    ("normal=sep_conv_3x3~0,sep_conv_3x3~1", "lacks the reduce cell"),
    ("cell=sep_conv_3x3~0", "malformed genotype part"),
    ("normal=sep_conv_3x3:0,sep_conv_3x3~1 reduce=max_pool_3x3~0,skip_connect~1", "malformed pair"),
])
def test_bad_genotypes_are_user_errors(text, fragment):
    with pytest.raises(UserError, match=fragment):
        Genotype.parse(text)


def test_layers_fewer_than_three_is_a_user_error():
    with pytest.raises(UserError, match="at least 3 cells"):
        SupernetConfig(layers=2)
    with pytest.raises(UserError, match="unknown DARTS op"):
        make_op("conv_9x9", 4, 1, search=True)


def test_darts_v2_evaluation_network_has_the_published_size():
    model = EvalNetwork(DARTS_V2, channels=36, layers=20)
    params = count_params(model)  # auxiliary head excluded, as the paper's 3.3 M counts it
    assert abs(params - 3.3e6) / 3.3e6 < 0.03
    assert abs(count_params(model, auxiliary=True) - 3.3e6) / 3.3e6 > 0.03  # with it: 3.8 M


def test_evaluation_network_aux_head_and_drop_path():
    torch.manual_seed(0)
    model = EvalNetwork(DARTS_V2, channels=4, layers=3, num_classes=5, drop_path=0.2)
    model.drop_path_prob = 0.2
    x = torch.randn(2, 3, 32, 32)  # the auxiliary head expects CIFAR's 8x8 at 2/3 depth
    logits, aux = model.train()(x)
    assert logits.shape == aux.shape == (2, 5)
    assert model.eval()(x).shape == (2, 5)
    # Where the head sits: after cell 2L//3 (0-based), the second reduction cell, as in the
    # original code (`if i == 2*self._layers//3`), where a 32 px input is 8x8. With 6 cells
    # (reductions at 2 and 4) that is cell 4; cell 5 has the same shape, so check which cell's
    # output the head is actually fed.
    deeper = EvalNetwork(DARTS_V2, channels=4, layers=6, num_classes=5).train()
    outputs, fed = {}, []
    for i, cell in enumerate(deeper.cells):
        cell.register_forward_hook(lambda m, args, out, i=i: outputs.__setitem__(i, out))
    deeper.auxiliary.register_forward_hook(lambda m, args, out: fed.append(args[0]))
    deeper(x)
    assert len(fed) == 1
    assert [i for i, out in outputs.items() if out.shape == fed[0].shape and torch.equal(out, fed[0])] == [4]
    assert fed[0].shape == (2, deeper.auxiliary.features[0][0].in_channels, 8, 8)
    digits = EvalNetwork(DARTS_V2, channels=4, layers=3, num_classes=10, in_channels=1).train()
    assert [t.shape for t in digits(torch.randn(2, 1, 28, 28))] == [(2, 10), (2, 10)]  # 7x7 at the head
    kept = drop_path(torch.ones(1000, 1, 1, 1, dtype=torch.double), 0.25)
    assert set(kept.unique().tolist()) <= {0.0, 1.0 / 0.75} and 0.15 < (kept == 0).double().mean() < 0.35
