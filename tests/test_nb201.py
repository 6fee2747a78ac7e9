"""The NAS-Bench-201 space (strings identical to the tables', the benchmark's network) and the
tabular evaluator with its data checks."""

from __future__ import annotations

import itertools
import shutil

import pytest
import torch

from edgenas.errors import UserError
from edgenas.evaluators.nb201 import FILES, NB201Evaluator, load_tables
from edgenas.spaces import get_space
from edgenas.spaces.nb201 import OPS
from edgenas.util.modelinfo import count_params

ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


@pytest.fixture(scope="module")
def tables(nb201_dir):
    return load_tables(nb201_dir)


def test_space_decisions_and_string_order():
    space = get_space("nb201")
    assert [d.name for d in space.decisions] == ["node1<-0", "node2<-0", "node2<-1", "node3<-0", "node3<-1", "node3<-2"]
    assert all(d.choices == OPS for d in space.decisions) and space.size() == 15625
    arch = space.arch_from_indices((3, 0, 4, 1, 2, 3))
    assert arch == "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    assert space.indices_from_arch(arch) == (3, 0, 4, 1, 2, 3)


def test_space_spells_every_table_architecture_exactly(tables):
    space = get_space("nb201")
    ours = {space.arch_from_indices(ix) for ix in itertools.product(range(5), repeat=6)}
    assert ours == set(tables.archs)


@pytest.mark.parametrize(
    "bad",
    [
        "nor_conv_3x3~0",
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|",
        "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~0|+|none~0|+|none~0|none~1|none~2|",
    ],
)
def test_space_rejects_malformed_strings(bad):
    with pytest.raises(UserError, match="nb201"):
        get_space("nb201").indices_from_arch(bad)


def test_network_matches_published_parameter_counts():
    # NATS-Bench topology space on CIFAR-10: 1.531546 M (all 3x3 convs) to 0.073306 M (no ops).
    space = get_space("nb201")
    assert count_params(space.build(ALL_CONV3)) == 1_531_546
    assert count_params(space.build(ALL_NONE)) == 73_306


def test_small_network_runs_and_none_cells_output_zero():
    torch.manual_seed(0)
    space = get_space("nb201", channels=4, cells_per_stage=1, num_classes=7)
    model = space.build("|nor_conv_1x1~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|skip_connect~2|")
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 7)
    empty = space.build(ALL_NONE)
    cell = empty.cells[0]
    assert torch.count_nonzero(cell(torch.randn(1, 4, 8, 8))) == 0


def test_evaluator_reads_the_tables(tables):
    evaluator = NB201Evaluator(tables, "cifar10", "pixel3")
    best = evaluator.evaluate(tables.archs[6111])  # the published CIFAR-10 optimum, 94.3733 %
    assert best.ok
    assert best.metrics["test_accuracy"] == pytest.approx(0.943733, abs=1e-6)
    assert 0 < best.accuracy < 1  # a fraction, the 12-epoch validation accuracy
    assert best.latency_ms > 0
    row1 = evaluator.evaluate(tables.archs[1])
    assert row1.latency_ms == pytest.approx(17.2381)  # nb201_latency_ms.csv row 1, pixel3
    assert row1.accuracy == pytest.approx(0.82834)  # nb201_12epoch_accs.csv row 1, cifar10-val
    fpga = NB201Evaluator(tables, "cifar10", "fpga").evaluate(tables.archs[1])
    assert fpga.latency_ms == pytest.approx(5.31536)
    failed = evaluator.evaluate("|bogus~0|")
    assert not failed.ok and "nb201" in failed.error


def test_unknown_device_and_dataset(tables):
    with pytest.raises(UserError, match="no device column 'pixel9'.*pixel3"):
        NB201Evaluator(tables, "cifar10", "pixel9")
    with pytest.raises(UserError, match="unknown NAS-Bench-201 dataset"):
        NB201Evaluator(tables, "mnist", "pixel3")


def test_bad_data_directories(tmp_path, nb201_dir):
    with pytest.raises(UserError, match="does not exist.*download"):
        load_tables(tmp_path / "absent")
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(nb201_dir / FILES[0], partial / FILES[0])
    with pytest.raises(UserError, match="lacks nb201_12epoch_accs.csv, nb201_latency_ms.csv"):
        load_tables(partial)
    short = tmp_path / "short"
    short.mkdir()
    for name in FILES:
        shutil.copy(nb201_dir / name, short / name)
    lines = (short / FILES[2]).read_text().splitlines()
    (short / FILES[2]).write_text("\n".join(lines[:100]) + "\n")
    with pytest.raises(UserError, match="has 99 rows"):
        load_tables(short)
