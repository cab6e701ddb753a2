"""Data sources and preparation: a fake mirror of real-format zip shards, corruption, interruption, download."""

import hashlib
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import file_size_limit
from PIL import Image

from compat.data import load_dataset, make_synthetic, prepare
from compat.data.prepare import downsample, is_complete, prepare_tiny_imagenet
from compat.data.sources import default_mirror, download_official, resolve_source
from compat.errors import ConfigError, DataError

WNIDS = ["n03000000", "n01000000", "n02000000"]  # unsorted on purpose, as the real wnids.txt


def _jpeg(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def make_fake_mirror(folder: Path, train_per_class: int = 4, bad_val_image: bool = False) -> Path:
    """Shards in the real mirror's layout: meta.zip, one train shard, val.zip and SHA256SUMS.

    ``bad_val_image`` adds an annotated val image whose bytes are not a JPEG.
    """
    folder.mkdir(parents=True)
    root = "tiny-imagenet-200/"
    with zipfile.ZipFile(folder / "meta.zip", "w") as z:
        z.writestr(root + "wnids.txt", "\n".join(WNIDS) + "\n")
        z.writestr(root + "words.txt", "".join(f"{w}\tclass {w}\n" for w in WNIDS))
        lines = [f"val_{k}.JPEG\t{WNIDS[k % 3]}\t0\t0\t1\t1\n" for k in range(6)]
        lines += ["val_99.JPEG\tn01000000\t0\t0\t1\t1\n"] if bad_val_image else []
        z.writestr(root + "val/val_annotations.txt", "".join(lines))
    with zipfile.ZipFile(folder / "train-0.zip", "w") as z:
        for w in WNIDS:
            level = int(w[2]) * 60  # colour encodes the class: sorted id 1 -> 60, 2 -> 120, 3 -> 180
            for k in range(train_per_class):
                z.writestr(f"{root}train/{w}/images/{w}_{k}.JPEG", _jpeg((level, k * 10, 0)))
            z.writestr(f"{root}train/{w}/{w}_boxes.txt", "")
    with zipfile.ZipFile(folder / "val.zip", "w") as z:
        for k in range(6):
            z.writestr(f"{root}val/images/val_{k}.JPEG", _jpeg((int(WNIDS[k % 3][2]) * 60, 0, 0)))
        if bad_val_image:
            z.writestr(f"{root}val/images/val_99.JPEG", b"not a jpeg")
    sums = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in sorted(folder.glob("*.zip")))
    (folder / "SHA256SUMS").write_text(sums)
    return folder


@pytest.fixture
def mirror(tmp_path):
    return make_fake_mirror(tmp_path / "mirror")


def test_prepare_from_mirror_sorts_classes_and_loads(mirror, tmp_path):
    cache = tmp_path / "data"
    folder = prepare(mirror=mirror, cache_root=cache)
    assert is_complete(folder)
    images = np.load(folder / "train_64.npy")
    labels = np.load(folder / "train_labels.npy")
    assert images.shape == (12, 64, 64, 3) and labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # label = index in sorted WordNet ids; the red channel encodes which class the image came from
    assert np.abs(images[:, 32, 32, 0].astype(int) - np.repeat([60, 120, 180], 4)).max() <= 3
    assert np.load(folder / "val_labels.npy").tolist() == [2, 0, 1, 2, 0, 1]
    small = np.load(folder / "train_32.npy")
    assert small.shape == (12, 32, 32, 3)


def test_downsample_averages_and_keeps_constant_images():
    constant = np.full((2, 64, 64, 3), 77, np.uint8)
    assert (downsample(constant, 32) == 77).all()
    checker = np.indices((64, 64)).sum(0) % 2 * 255  # finest checkerboard: antialiasing gives mid grey
    img = np.repeat(checker[None, :, :, None], 3, axis=3).astype(np.uint8)
    assert np.abs(downsample(img, 32)[:, 1:-1, 1:-1].astype(int) - 128).max() <= 2  # borders see padding


def test_second_prepare_reuses_cache(mirror, tmp_path):
    cache = tmp_path / "data"
    folder = prepare(mirror=mirror, cache_root=cache)
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    (mirror / "train-0.zip").write_bytes(b"broken")  # not even read again
    assert prepare(mirror=mirror, cache_root=cache) == folder
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp


@pytest.mark.reliability(fault="a corrupt data shard (checksum mismatch)", behaviour="one error naming the shard; no cache is left")
def test_corrupt_shard_is_a_clear_error_and_leaves_no_cache(mirror, tmp_path):
    shard = mirror / "train-0.zip"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"corrupt shard .*train-0.zip.*sha256sum -c SHA256SUMS"):
        prepare(mirror=mirror, cache_root=tmp_path / "data")
    assert not (tmp_path / "data" / "tiny-imagenet-200").exists()


@pytest.mark.reliability(fault="a missing shard or mirror folder", behaviour="one error naming what is missing and how to point to a mirror")
def test_missing_shard_and_missing_mirror_are_clear_errors(mirror, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        prepare(mirror=tmp_path / "nowhere", cache_root=tmp_path / "data")
    (mirror / "val.zip").unlink()
    with pytest.raises(DataError, match="lacks val.zip"):
        prepare(mirror=mirror, cache_root=tmp_path / "data")


def test_env_variable_names_the_mirror(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPAT_TINY_IMAGENET_MIRROR", str(mirror))
    assert resolve_source(None, tmp_path / "dl").kind == "mirror"


@pytest.mark.parametrize("step", ["classes", "decode-train", "downsample-val-32", "manifest"])
@pytest.mark.reliability(fault="data preparation killed at any step", behaviour="no cache that looks valid is left; the next run prepares again")
def test_interrupted_preparation_leaves_nothing_valid(mirror, tmp_path, step):
    cache = tmp_path / "data"
    source = resolve_source(mirror, cache / "dl")

    def interrupt(name):
        if name == step:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_tiny_imagenet(source, cache, on_step=interrupt)
    assert not is_complete(cache / "tiny-imagenet-200")
    assert [p.name for p in cache.iterdir() if p.name != "dl"] == []  # no temp folder left either
    assert is_complete(prepare_tiny_imagenet(source, cache))  # and the next run completes


@pytest.mark.reliability(fault="a truncated file in the data cache", behaviour="the cache is not trusted and is rebuilt")
def test_truncated_cache_file_is_not_trusted(mirror, tmp_path):
    folder = prepare(mirror=mirror, cache_root=tmp_path / "data")
    with open(folder / "train_32.npy", "r+b") as f:
        f.truncate(100)
    assert not is_complete(folder)
    assert is_complete(prepare(mirror=mirror, cache_root=tmp_path / "data"))


@pytest.mark.reliability(fault="an undecodable image in a shard", behaviour="one error naming the image")
def test_bad_image_in_shard_is_a_clear_error(tmp_path):
    mirror = make_fake_mirror(tmp_path / "m", bad_val_image=True)
    with pytest.raises(DataError, match="cannot decode image .*val_99"):
        prepare(mirror=mirror, cache_root=tmp_path / "data")
    assert not (tmp_path / "data" / "tiny-imagenet-200").exists()


def _zip_of_mirror(mirror: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as dst:
        for shard in sorted(mirror.glob("*.zip")):
            with zipfile.ZipFile(shard) as src:
                for name in src.namelist():
                    dst.writestr(name, src.read(name))
    return out


@pytest.mark.reliability(fault="a download whose checksum does not match", behaviour="refused; nothing is kept")
def test_download_verifies_checksum_and_keeps_nothing_on_mismatch(mirror, tmp_path):
    archive = _zip_of_mirror(mirror, tmp_path / "tiny-imagenet-200.zip")
    url = archive.as_uri()
    dest = tmp_path / "downloads"
    with pytest.raises(DataError, match="md5 .* expected 0{32}"):
        download_official(dest, url=url, md5="0" * 32)
    assert list(dest.iterdir()) == []
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    source = download_official(dest, url=url, md5=md5)
    assert source.kind == "official" and source.checksums == {"tiny-imagenet-200.zip": f"md5:{md5}"}
    assert is_complete(prepare_tiny_imagenet(source, tmp_path / "data"))


@pytest.mark.reliability(fault="no network and no mirror", behaviour="one error that names the mirror option")
def test_download_failure_names_the_mirror_fix(tmp_path):
    with pytest.raises(DataError, match="COMPAT_TINY_IMAGENET_MIRROR"):
        download_official(tmp_path / "dl", url=(tmp_path / "absent.zip").as_uri())
    assert list((tmp_path / "dl").iterdir()) == []


def test_synthetic_is_deterministic_and_validated():
    a, b = make_synthetic(seed=3), make_synthetic(seed=3)
    assert np.array_equal(a.train.images, b.train.images) and np.array_equal(a.val.labels, b.val.labels)
    assert not np.array_equal(a.train.images, make_synthetic(seed=4).train.images)
    assert a.num_classes == 20 and len(a.train) == 800 and a.image_size == 32
    with pytest.raises(ConfigError, match="num_classes=1"):
        make_synthetic(num_classes=1)
    with pytest.raises(ConfigError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")


@pytest.mark.skipif(not default_mirror().is_dir(), reason="the shared Tiny-ImageNet mirror is not beside this checkout")
def test_real_tiny_imagenet_counts(monkeypatch):
    """The real data, prepared into the project's own cache (as `make data` does)."""
    from compat.paths import project_root

    monkeypatch.setenv("COMPAT_CACHE", str(project_root() / ".cache"))
    data = load_dataset("tiny-imagenet", 32)
    assert data.num_classes == 200 and len(data.train) == 100_000 and len(data.val) == 10_000
    assert np.bincount(data.train.labels).tolist() == [500] * 200
    assert np.bincount(data.val.labels).tolist() == [50] * 200
    assert list(data.class_ids) == sorted(data.class_ids)


@pytest.mark.reliability(
    fault="a data cache file with changed bytes (same size: a wrong label, a changed pixel)",
    behaviour="detected by the sha256 in its manifest when loaded, named, and the cache prepared again",
)
def test_changed_bytes_in_the_data_cache_are_named_and_prepared_again(mirror, tmp_path):
    from compat.data import load_tiny_imagenet

    folder = prepare(mirror=mirror, cache_root=tmp_path / "data")
    labels = np.load(folder / "val_labels.npy")
    raw = bytearray((folder / "val_labels.npy").read_bytes())
    raw[-8] ^= 1  # the last label, same file size: a size check cannot see it
    (folder / "val_labels.npy").write_bytes(bytes(raw))
    assert is_complete(folder) and np.load(folder / "val_labels.npy")[-1] != labels[-1]
    with pytest.warns(UserWarning, match="val_labels.npy do not match the sha256"):
        data = load_tiny_imagenet(32, cache_root=tmp_path / "data", mirror=mirror)
    assert np.array_equal(data.val.labels, labels)


def test_a_cache_without_digests_is_not_trusted(mirror, tmp_path):
    import json

    folder = prepare(mirror=mirror, cache_root=tmp_path / "data")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["sha256"]) == set(manifest["files"]) and "manifest.json" not in manifest["files"]
    del manifest["sha256"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert not is_complete(folder)


@pytest.mark.reliability(
    fault="a data cache folder that cannot be written, with no prepared cache in it",
    behaviour="refused before the shards are read, naming the folder and COMPAT_DATA_DIR (it raised a raw OSError)",
)
def test_an_unwritable_data_cache_is_refused_before_preparing(mirror, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=f"the data cache folder {blocker / 'data'} cannot be written.*COMPAT_DATA_DIR"):
        prepare(mirror=mirror, cache_root=blocker / "data")


@pytest.mark.reliability(
    fault="a disk without room for the data cache",
    behaviour="refused before decoding, naming the folder, the space free and needed (a memory map on a full disk dies of SIGBUS); no temp folder left",
)
def test_a_disk_without_room_is_refused_before_decoding(mirror, tmp_path, monkeypatch):
    cache = tmp_path / "data"
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=100_000))
    needed = 18 * (64 * 64 * 3 + 32 * 32 * 3 + 8) + 2**20  # 12 train and 6 val images, every prepared size
    with pytest.raises(DataError, match=rf"{cache} has 0.00 GiB free and preparing 18 images needs {needed / 2**30:.2f} GiB"):
        prepare(mirror=mirror, cache_root=cache)
    assert list(cache.iterdir()) == []


@pytest.mark.reliability(
    fault="a file-size limit reached while the data cache is written",
    behaviour="one DataError naming the file and `ulimit -f` (no raw OSError); no temp folder or partial cache left",
)
def test_a_file_size_limit_while_preparing_is_one_clear_error(mirror, tmp_path):
    cache = tmp_path / "data"
    source = resolve_source(mirror, cache / "dl")
    with (
        file_size_limit(50_000),
        pytest.raises(  # the 12 train images at 64 px take 147 kB
            DataError, match=r"cannot write .* \(File too large\): raise the file-size limit .*no partial data cache"
        ),
    ):
        prepare_tiny_imagenet(source, cache)
    assert [p.name for p in cache.iterdir() if p.name != "dl"] == []
    assert is_complete(prepare_tiny_imagenet(source, cache))  # and with the limit lifted it prepares
