"""Datasets (embedded digits, CIFAR JPEG shards, CIFAR pickles, image folders) and the batched loader."""

from __future__ import annotations

import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from edgenas.data import Augment, BatchLoader, ImageDataset, load_dataset
from edgenas.data.augment import crop_flip, cutout
from edgenas.errors import UserError


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_dataset("digits")


def _real_rgb32(digits: ImageDataset, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n real images as 32x32 RGB uint8 (digits padded to 32 px, tinted per channel) + labels."""
    mixed = digits.subset(n, seed=7)  # the stored split is sorted by class; mix the classes
    images = mixed.images.numpy()  # [n, 1, 28, 28]
    padded = np.zeros((n, 3, 32, 32), np.uint8)
    for c, scale in enumerate((1.0, 0.7, 0.4)):
        padded[:, c, 2:30, 2:30] = (images[:, 0] * scale).astype(np.uint8)
    return padded, mixed.labels.numpy()


# ---- the embedded default -------------------------------------------------------------------

def test_digits_are_real_balanced_and_split_once(digits: ImageDataset) -> None:
    test = load_dataset("digits", "test")
    assert digits.images.shape == (4000, 1, 28, 28) and digits.images.dtype == torch.uint8
    assert test.images.shape == (1000, 1, 28, 28)
    assert torch.bincount(digits.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    assert digits.classes == [str(d) for d in range(10)]
    # Real handwriting: mostly background with bright strokes (MNIST's mean is about 0.13).
    mean, std = digits.channel_stats()
    assert 0.08 < mean[0] < 0.2 and 0.25 < std[0] < 0.4
    # The same call gives the same cut.
    assert torch.equal(load_dataset("digits", "test").images, test.images)


def test_unknown_spec_and_split_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(UserError, match="unknown split"):
        load_dataset("digits", "validation")
    with pytest.raises(UserError, match="shard count"):
        load_dataset("cifar10-jpeg:abc")


# ---- split, subset, statistics --------------------------------------------------------------

def test_split_is_stratified_disjoint_and_seeded(digits: ImageDataset) -> None:
    small = digits.subset(1000, seed=3)
    assert torch.bincount(small.labels).tolist() == [100] * 10
    a, b = small.split(0.8, seed=1)
    assert (len(a), len(b)) == (800, 200)
    assert torch.bincount(b.labels).tolist() == [20] * 10
    rows_a = {x.numpy().tobytes() for x in a.images}
    rows_b = {x.numpy().tobytes() for x in b.images}
    assert len(rows_a) == 800 and len(rows_b) == 200  # real digits: no two images are equal
    assert not rows_a & rows_b
    a2, _ = small.split(0.8, seed=1)
    a3, _ = small.split(0.8, seed=2)
    assert torch.equal(a.images, a2.images)
    assert not torch.equal(a.images, a3.images)


def test_too_small_to_split_or_subset_is_a_user_error(digits: ImageDataset) -> None:
    tiny = digits.take(torch.tensor([0]))
    with pytest.raises(UserError, match="too few to split"):
        tiny.split(0.5, seed=0)
    with pytest.raises(UserError, match="fewer than the 5000"):
        digits.subset(5000, seed=0)


def test_subset_with_uneven_classes_still_reaches_n(digits: ImageDataset) -> None:
    keep = torch.cat([torch.nonzero(digits.labels == 0).flatten()[:3],
                      torch.nonzero(digits.labels == 1).flatten()[:50]])
    uneven = digits.take(keep)
    part = uneven.subset(20, seed=0)
    assert len(part) == 20
    assert torch.bincount(part.labels, minlength=2).tolist() == [3, 17]


def test_channel_stats_match_numpy(digits: ImageDataset) -> None:
    mean, std = digits.channel_stats()
    pixels = digits.images.numpy().astype(np.float64) / 255.0
    assert mean[0] == pytest.approx(pixels.mean(), abs=1e-9)
    assert std[0] == pytest.approx(pixels.std(), abs=1e-9)


# ---- batched augmentation ---------------------------------------------------------------------

def test_crop_flip_output_is_a_window_of_the_padded_image(digits: ImageDataset) -> None:
    images = digits.images[:40]
    generator = torch.Generator().manual_seed(0)
    out = crop_flip(images, 3, True, generator)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (3, 3, 3, 3))
    flips, offsets = 0, set()
    for i in range(len(images)):
        found = None
        for oy in range(7):
            for ox in range(7):
                window = padded[i, :, oy : oy + 28, ox : ox + 28]
                if torch.equal(out[i], window):
                    found = (oy, ox, False)
                elif torch.equal(out[i], window.flip(-1)):
                    found = (oy, ox, True)
        assert found is not None, f"image {i} is not a (flipped) window of its padded input"
        flips += found[2]
        offsets.add(found[:2])
    assert 5 < flips < 35  # about half are flipped
    assert len(offsets) > 10  # many different offsets are drawn


def test_cutout_zeroes_one_clipped_square() -> None:
    images = torch.ones(200, 2, 12, 12)
    out = cutout(images.clone(), 4, torch.Generator().manual_seed(0))
    for i in range(200):
        zero = out[i, 0] == 0
        assert torch.equal(zero, out[i, 1] == 0)  # same square in every channel
        rows = torch.nonzero(zero.any(1)).flatten()
        cols = torch.nonzero(zero.any(0)).flatten()
        assert 1 <= len(rows) <= 4 and 1 <= len(cols) <= 4
        assert int(zero.sum()) == len(rows) * len(cols)  # a solid rectangle, clipped square
    assert (out == 0).float().mean() > 0.05


def test_loader_normalises_and_covers_each_image_once(digits: ImageDataset) -> None:
    data = digits.subset(300, seed=0)
    loader = BatchLoader(data, 64, seed=5)
    assert len(loader) == 5
    seen = []
    for images, labels in loader:
        assert images.dtype == torch.float32 and labels.dtype == torch.int64
        # Undo the normalisation: it must give back the stored uint8 image exactly.
        raw = (images * loader.std[0] + loader.mean[0]) * 255.0
        assert torch.allclose(raw, raw.round(), atol=1e-3)
        seen.append(raw.round().to(torch.uint8))
        for image, label in zip(raw.round().to(torch.uint8), labels):
            matches = (data.images == image).flatten(1).all(1)
            assert bool(matches.any()) and int(data.labels[matches][0]) == int(label)
    batch = torch.cat(seen)
    assert len(batch) == 300
    stacked = torch.cat([x for x, _ in BatchLoader(data, 300, shuffle=False)])
    assert abs(float(stacked.mean())) < 1e-4 and float(stacked.std()) == pytest.approx(1.0, abs=1e-3)


def test_loader_is_seeded_and_reshuffles_each_epoch(digits: ImageDataset) -> None:
    data = digits.subset(200, seed=0)
    augment = Augment(crop_padding=2, flip=True, cutout=6)

    def epochs(seed: int) -> list[torch.Tensor]:
        loader = BatchLoader(data, 50, augment=augment, seed=seed)
        return [torch.cat([y for _, y in loader]) for _ in range(2)]

    first, again, other = epochs(1), epochs(1), epochs(2)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], first[1])
    assert not torch.equal(first[0], other[0])
    x1 = next(iter(BatchLoader(data, 50, augment=augment, seed=1)))[0]
    x2 = next(iter(BatchLoader(data, 50, augment=augment, seed=1)))[0]
    assert torch.equal(x1, x2)


def test_loader_drop_last_channels_last_and_bad_settings(digits: ImageDataset) -> None:
    data = digits.subset(130, seed=0)
    assert len(BatchLoader(data, 64, drop_last=True)) == 2
    assert len(BatchLoader(data, 64)) == 3
    images, _ = next(iter(BatchLoader(data, 8, channels_last=True)))
    assert images.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(UserError, match="batch size"):
        BatchLoader(data, 0)
    with pytest.raises(UserError, match="one per channel"):
        BatchLoader(data, 8, mean=(0.5, 0.5), std=(0.2, 0.2))
    with pytest.raises(UserError):
        Augment(crop_padding=-1)
    assert Augment.for_dataset(digits) == Augment(crop_padding=3, flip=False)  # no mirrored digits


# ---- CIFAR-10 JPEG shards -------------------------------------------------------------------

def test_cifar10_jpeg_first_shard(cifar10_dir: Path) -> None:
    data = load_dataset("cifar10-jpeg:1", data_dir=cifar10_dir)
    assert data.images.shape == (2500, 3, 32, 32)
    assert torch.bincount(data.labels).tolist() == [250] * 10
    assert data.classes[0] == "airplane" and data.classes[9] == "truck"
    mean, _ = data.channel_stats()
    # The README's checked train mean is (0.4913, 0.4821, 0.4465); one shard lies close to it.
    assert mean == pytest.approx((0.4913, 0.4821, 0.4465), abs=0.02)
    test = load_dataset("cifar10-jpeg", "test", data_dir=cifar10_dir, shards=1)
    assert len(test) == 2500 and not torch.equal(test.images[:10], data.images[:10])


def test_cifar10_jpeg_bad_input_names_the_file(tmp_path: Path, cifar10_dir: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_dataset("cifar10-jpeg", data_dir=tmp_path / "nowhere")
    with pytest.raises(UserError, match="no cifar10_train_NN.zip"):
        load_dataset("cifar10-jpeg", data_dir=tmp_path)
    (tmp_path / "cifar10_train_00.zip").write_bytes(b"this is not a zip")
    with pytest.raises(UserError, match="cifar10_train_00.zip is not a readable zip"):
        load_dataset("cifar10-jpeg", data_dir=tmp_path)
    with pytest.raises(UserError, match="asked for 99"):
        load_dataset("cifar10-jpeg:99", data_dir=cifar10_dir)
    # A zip whose member is a truncated JPEG.
    with zipfile.ZipFile(cifar10_dir / "cifar10_train_00.zip") as source:
        member = sorted(source.namelist())[0]
        good = source.read(member)
    with zipfile.ZipFile(tmp_path / "cifar10_train_00.zip", "w") as broken:
        broken.writestr(member, good[: len(good) // 3])
    with pytest.raises(UserError, match=f"member '{member}'"):
        load_dataset("cifar10-jpeg", data_dir=tmp_path)


# ---- CIFAR python pickles ---------------------------------------------------------------------

def _write_cifar10_tree(root: Path, digits: ImageDataset) -> tuple[np.ndarray, np.ndarray]:
    """A tiny CIFAR-10 pickle tree in the real format (5 train batches, test batch, meta)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images, labels = _real_rgb32(digits, 60)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": 10, b"num_vis": 3072}, f)
    for i in range(5):
        part = slice(10 * i, 10 * i + 10)
        batch = {b"batch_label": f"training batch {i + 1} of 5".encode(), b"labels": labels[part].tolist(),
                 b"data": images[part].reshape(10, 3072), b"filenames": [b"x.png"] * 10}
        with open(folder / f"data_batch_{i + 1}", "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"labels": labels[50:].tolist(), b"data": images[50:].reshape(10, 3072)}, f)
    return images, labels


def test_cifar10_pickle_round_trip_folder_and_targz(tmp_path: Path, digits: ImageDataset) -> None:
    images, labels = _write_cifar10_tree(tmp_path / "extracted", digits)
    train = load_dataset(f"cifar10:{tmp_path / 'extracted'}")
    assert torch.equal(train.images, torch.from_numpy(images[:50]))
    assert train.labels.tolist() == labels[:50].tolist() and train.classes[1] == "automobile"
    test = load_dataset(f"cifar10:{tmp_path / 'extracted' / 'cifar-10-batches-py'}", "test")
    assert torch.equal(test.images, torch.from_numpy(images[50:]))
    (tmp_path / "download").mkdir()
    with tarfile.open(tmp_path / "download" / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "extracted" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    from_tar = load_dataset(f"cifar10:{tmp_path / 'download'}")
    assert torch.equal(from_tar.images, train.images)


def test_cifar100_pickle_uses_fine_labels(tmp_path: Path, digits: ImageDataset) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    images, labels = _real_rgb32(digits, 30)
    fine = [f"class{i}".encode() for i in range(100)]
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": fine, b"coarse_label_names": [b"c"] * 20}, f)
    for name, part in (("train", slice(0, 20)), ("test", slice(20, 30))):
        with open(folder / name, "wb") as f:
            pickle.dump({b"fine_labels": (labels[part] * 7).tolist(), b"coarse_labels": [0] * 10,
                         b"data": images[part].reshape(-1, 3072)}, f)
    data = load_dataset(f"cifar100:{tmp_path}")
    assert len(data.classes) == 100 and data.labels.tolist() == (labels[:20] * 7).tolist()
    assert torch.equal(data.images, torch.from_numpy(images[:20]))


def test_cifar_pickle_bad_input(tmp_path: Path, digits: ImageDataset) -> None:
    _write_cifar10_tree(tmp_path, digits)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    with pytest.raises(UserError, match="data_batch_3"):
        load_dataset(f"cifar10:{tmp_path}")
    (folder / "data_batch_3").write_bytes(b"\x80\x02garbage")
    with pytest.raises(UserError, match="data_batch_3 is not a CIFAR pickle"):
        load_dataset(f"cifar10:{tmp_path}")

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(UserError, match="refusing to load builtins.print"):
        load_dataset(f"cifar10:{tmp_path}")
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        load_dataset(f"cifar10:{tmp_path / 'empty'}")


# ---- image folders ----------------------------------------------------------------------------

def _write_folder(root: Path, digits: ImageDataset, size: int | None = None) -> None:
    from PIL import Image

    mixed = digits.subset(12, seed=0)
    for i in range(12):
        folder = root / "train" / f"digit{int(mixed.labels[i])}"
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(mixed.images[i, 0].numpy())
        if size and i == 5:
            image = image.resize((size, size + 4))
        image.save(folder / f"{i:03d}.png")


def test_image_folder_loads_classes_in_sorted_order(tmp_path: Path, digits: ImageDataset) -> None:
    _write_folder(tmp_path, digits)
    data = load_dataset(f"folder:{tmp_path}")
    assert data.classes == sorted(data.classes) and len(data) == 12
    assert data.images.shape == (12, 3, 28, 28)
    mixed = digits.subset(12, seed=0)
    assert sorted(data.classes) == sorted({f"digit{int(y)}" for y in mixed.labels})
    first = data.classes.index(f"digit{int(mixed.labels[0])}")
    index = int(torch.nonzero(data.labels == first)[0])
    assert torch.equal(data.images[index, 0], mixed.images[0, 0])  # the first file of that class
    with pytest.raises(UserError, match="no val/ or test/"):
        load_dataset(f"folder:{tmp_path}", "test")


def test_image_folder_sizes_and_corrupt_files(tmp_path: Path, digits: ImageDataset) -> None:
    _write_folder(tmp_path, digits, size=40)
    with pytest.raises(UserError, match="pass an image size"):
        load_dataset(f"folder:{tmp_path}")
    resized = load_dataset(f"folder:{tmp_path}", image_size=16)
    assert resized.images.shape == (12, 3, 16, 16)
    bad = next((tmp_path / "train").iterdir()) / "zzz.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(UserError, match="zzz.png is not a readable image"):
        load_dataset(f"folder:{tmp_path}", image_size=16)
    with pytest.raises(UserError, match="not found"):
        load_dataset(f"folder:{tmp_path / 'missing'}")


def test_cifar_pickle_batch_bytes_layout_matches_channel_planes(tmp_path: Path, digits: ImageDataset) -> None:
    """CIFAR rows are 1024 red, then 1024 green, then 1024 blue bytes, each row-major."""
    images, _ = _write_cifar10_tree(tmp_path, digits)
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes(), encoding="bytes")
    row = raw[b"data"][0]
    data = load_dataset(f"cifar10:{tmp_path}")
    assert data.images[0, 1, 3, 5] == row[1024 + 3 * 32 + 5]


# ---- the CLI -----------------------------------------------------------------------------------

def test_cli_data_info_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from edgenas.cli.main import main

    assert main(["data", "info", "digits8", "--split", "test", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == len(load_dataset("digits8", "test")) and summary["height"] == 8
    (tmp_path / "cifar10_train_00.zip").write_bytes(b"broken")
    assert main(["data", "info", "cifar10-jpeg", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cifar10_train_00.zip" in err[0]
    too_deep = "ds_r1_k3_s2_c8 " + " ".join(["ir_r1_k3_s2_e3_c16"] * 4)
    assert main(["data", "proxy", too_deep, "--dataset", "digits8", "--proxy-steps", "2"]) == 2
    assert "total stride" in capsys.readouterr().err
