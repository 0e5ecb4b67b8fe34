"""The IDX parser on good and corrupt files, the lookup order, the download, and the real data."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import idx_bytes, run_in_process, write_idx, write_synthetic_dataset

from edgefmnist import data, spec
from edgefmnist.errors import DataError


def images(n: int = 3) -> np.ndarray:
    return np.arange(n * 28 * 28, dtype=np.uint32).reshape(n, 28, 28) % 256


def test_parses_gzipped_and_plain_idx(tmp_path: Path) -> None:
    array = images()
    for gzipped in (True, False):
        path = write_idx(tmp_path / f"x-images-{gzipped}", idx_bytes(array), gzipped=gzipped)
        loaded = data.load_idx_images(path)
        assert loaded.dtype == np.uint8 and loaded.shape == (3, 28, 28)
        np.testing.assert_array_equal(loaded, array.astype(np.uint8))
    labels = write_idx(tmp_path / "y.gz", idx_bytes(np.array([0, 9, 3])))
    np.testing.assert_array_equal(data.load_idx_labels(labels), [0, 9, 3])


@pytest.mark.parametrize(
    "payload, message",
    [
        (idx_bytes(images(), magic=0x00000801, dims=(3, 28, 28)), r"labels \(1 dimension\), expected images \(3"),
        (idx_bytes(images(), magic=0x00000D03, dims=(3, 28, 28)), "bad IDX magic"),
        (idx_bytes(images())[:-10], "truncated data"),
        (idx_bytes(images())[:6], "truncated header"),
        (idx_bytes(images()) + b"\x00", "more data than the header declares"),
        (idx_bytes(images(), dims=(4, 28, 28)), "truncated data"),
        (idx_bytes(images(2).reshape(2, 28 * 2, 14), dims=(2, 56, 14)), "images are 56x14"),
        (idx_bytes(images(), magic=0x00000804, dims=(3, 28, 28, 1)), r"4 dimensions, expected images \(3 dimensions\)"),
    ],
)
def test_corrupt_image_files_are_refused_with_their_name(tmp_path: Path, payload: bytes, message: str) -> None:
    path = write_idx(tmp_path / "bad-images.gz", payload)
    with pytest.raises(DataError, match=message) as caught:
        data.load_idx_images(path)
    assert str(path) in str(caught.value)


def test_labels_out_of_range_are_refused(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "labels.gz", idx_bytes(np.array([1, 10, 2])))
    with pytest.raises(DataError, match="label 10 out of range"):
        data.load_idx_labels(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"this is not gzip", "not a gzip file"),
        (b"", "not a gzip file"),
        (gzip.compress(idx_bytes(images()), mtime=0)[:40], "cannot read"),
    ],
    ids=["text", "empty", "truncated"],
)
def test_broken_gzip_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "images.gz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        data.load_idx_images(path)


def test_gzip_bomb_reads_no_more_than_the_header_declares(tmp_path: Path) -> None:
    bomb = idx_bytes(images(1)) + bytes(200 * 1024 * 1024)  # 200 MiB of zeros past the declared end
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(bomb, compresslevel=1))
    with pytest.raises(DataError, match="more data than the header declares"):
        data.load_idx_images(path)


def test_image_and_label_counts_must_match(tmp_path: Path, real_data_dir: Path) -> None:
    images = data.idx_file(real_data_dir, "t10k-images-idx3-ubyte")
    assert images is not None
    (tmp_path / images.name).symlink_to(images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(9)))
    with pytest.raises(
        DataError, match=f"t10k-labels-idx1-ubyte.gz: 9 labels, but {images.name} holds 10,000 test images"
    ):
        data.load_split(tmp_path, "test")


def test_unofficial_content_fails_checksum(tmp_path: Path) -> None:
    folder = write_synthetic_dataset(tmp_path / "d")
    with pytest.raises(DataError, match="not the official Fashion-MNIST"):
        data.load_split(folder, "test")


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, from_env, cache_home = tmp_path / "explicit", tmp_path / "env", tmp_path / "xdg"
    write_synthetic_dataset(explicit)
    write_synthetic_dataset(from_env)
    write_synthetic_dataset(cache_home / "edgefmnist")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    monkeypatch.setenv(data.ENV_DATA_DIR, str(from_env))
    assert data.find_data(explicit) == data.DataSource(explicit, "--data-dir")
    assert data.find_data() == data.DataSource(from_env, "$EDGEFMNIST_DATA")
    monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path / "missing"))  # the error names where the folder came from
    with pytest.raises(DataError, match=r"missing: no such folder, .*; the folder comes from \$EDGEFMNIST_DATA$"):
        data.find_data()
    monkeypatch.delenv(data.ENV_DATA_DIR)
    assert data.find_data() == data.DataSource(cache_home / "edgefmnist", "cache")
    debian = write_synthetic_dataset(tmp_path / "debian")
    monkeypatch.setattr(data, "DEBIAN_DATA_DIR", debian)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "no-cache"))
    assert data.find_data() == data.DataSource(debian, "debian package")
    monkeypatch.setattr(data, "DEBIAN_DATA_DIR", tmp_path / "no-debian")
    with pytest.raises(DataError, match="not found"):
        data.find_data(download=False)


def test_a_relative_xdg_cache_home_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The XDG Base Directory Specification: a relative path there is invalid and should be ignored."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert data.default_cache_dir() == tmp_path / ".cache" / "edgefmnist"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.default_cache_dir() == tmp_path / "xdg" / "edgefmnist"


def test_explicit_folder_missing_files_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing Fashion-MNIST file"):
        data.find_data(tmp_path)


def test_a_data_folder_that_does_not_exist_is_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path / "nonexistent"))
    with pytest.raises(DataError, match="nonexistent: no such folder, expected the Fashion-MNIST files"):
        data.find_data()
    (tmp_path / "a-file").write_text("")
    with pytest.raises(DataError, match="a-file: not a folder"):
        data.find_data(tmp_path / "a-file")


def test_download_verifies_and_writes_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local file:// mirror stands in for the official one; bad bytes leave nothing behind."""
    mirror = write_synthetic_dataset(tmp_path / "mirror")
    md5 = {name: hashlib.md5((mirror / f"{name}.gz").read_bytes()).hexdigest() for name in spec.DOWNLOAD_MD5}
    monkeypatch.setattr(spec, "DOWNLOAD_MD5", md5)
    cache = tmp_path / "cache"
    data.download_data(cache, base_url=mirror.as_uri() + "/")
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in md5)

    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"tampered"))
    (cache / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="checksum mismatch"):
        data.download_data(cache, base_url=mirror.as_uri() + "/")
    assert not (cache / "t10k-labels-idx1-ubyte.gz").exists()
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]


def test_a_download_of_the_official_content_compressed_otherwise_passes_by_its_sha256(real_data_dir: Path) -> None:
    labels = real_data_dir / "t10k-labels-idx1-ubyte.gz"
    name = "t10k-labels-idx1-ubyte"
    content = gzip.decompress(labels.read_bytes())
    assert hashlib.md5(labels.read_bytes()).hexdigest() != spec.DOWNLOAD_MD5[name]  # Debian compressed it anew
    assert data.downloaded_name(labels.read_bytes()) == name
    assert data.downloaded_name(gzip.compress(content, compresslevel=1)) == name
    assert (
        data.downloaded_name((real_data_dir / "train-labels-idx1-ubyte.gz").read_bytes()) == "train-labels-idx1-ubyte"
    )
    tampered = content[:-1] + bytes([(content[-1] + 1) % 10])  # one label changed
    for bad in (gzip.compress(tampered), gzip.compress(content)[:-8], gzip.compress(content) + b"junk", content):
        assert data.downloaded_name(bad) is None  # tampered, cut short (no CRC), more after the end, not gzip


def serve_mirror(mirror: Path, real_data_dir: Path, **replaced: bytes) -> str:
    """A file:// mirror of the Debian package's four .gz files, some replaced (by name); its URL."""
    mirror.mkdir()
    for name in spec.DOWNLOAD_MD5:
        (mirror / f"{name}.gz").write_bytes(replaced.get(name, (real_data_dir / f"{name}.gz").read_bytes()))
    return mirror.as_uri() + "/"


@pytest.mark.parametrize(
    "bad, reason",
    [
        (
            "swapped",
            "holds the official t10k-labels-idx1-ubyte, not t10k-images-idx3-ubyte "
            "(swapped or misnamed on the mirror?)",
        ),
        ("decompressed", "not a gzip file: a mirror serves the official .gz files"),
        ("tampered", "checksum mismatch (neither its MD5 nor its content's SHA-256 is the official one)"),
    ],
)
def test_a_bad_file_on_a_mirror_saves_none_of_the_files(
    tmp_path: Path, real_data_dir: Path, bad: str, reason: str
) -> None:
    labels = (real_data_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()
    payload = {"swapped": labels, "decompressed": gzip.decompress(labels), "tampered": gzip.compress(b"x")}[bad]
    url = serve_mirror(tmp_path / "mirror", real_data_dir, **{"t10k-images-idx3-ubyte": payload})  # the third file
    with pytest.raises(DataError) as caught:
        data.download_data(tmp_path / "cache", base_url=url)
    assert str(caught.value) == f"{url}t10k-images-idx3-ubyte.gz: {reason}; nothing was saved"
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


class NotFound(http.server.BaseHTTPRequestHandler):
    """Answers every GET with 404, as a mirror without the files does."""

    def do_GET(self) -> None:
        self.send_error(404, "File not found")

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A local HTTP server answering with ``handler`` while the block runs; its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_missing_file_on_a_mirror_names_the_http_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with serving(NotFound) as base:
        url = f"{base}fashion-mnist/"
        monkeypatch.setenv(data.ENV_MIRROR, url)
        with pytest.raises(DataError) as caught:
            data.download_data(tmp_path / "cache")
        with pytest.raises(DataError) as found_nowhere:
            data.download_found_nowhere()
    assert str(caught.value) == f"{url}train-images-idx3-ubyte.gz: download failed (HTTP 404 File not found)"
    assert str(found_nowhere.value) == (
        f"{url}train-images-idx3-ubyte.gz: download failed (HTTP 404 File not found); "
        "pass --data-dir or install the Debian package dataset-fashion-mnist"
    )


def test_a_mirror_without_a_trailing_slash_is_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = write_synthetic_dataset(tmp_path / "mirror")
    md5 = {name: hashlib.md5((mirror / f"{name}.gz").read_bytes()).hexdigest() for name in spec.DOWNLOAD_MD5}
    monkeypatch.setattr(spec, "DOWNLOAD_MD5", md5)
    monkeypatch.setenv(data.ENV_MIRROR, mirror.as_uri())
    data.download_data(tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(f"{n}.gz" for n in md5)


@pytest.mark.parametrize("mirror", ["notaurl/", "http://[::1/"])
def test_a_mirror_that_is_not_a_url_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mirror: str) -> None:
    monkeypatch.setenv(data.ENV_MIRROR, mirror)
    with pytest.raises(DataError, match="not a download address") as caught:
        data.download_data(tmp_path / "cache")
    assert "\n" not in str(caught.value) and not (tmp_path / "cache").exists()


class EndlessZeros(http.server.BaseHTTPRequestHandler):
    """Answers every GET with zeros and no Content-Length, well past the download limit."""

    protocol_version = "HTTP/1.0"
    sent = 0

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        block = bytes(1 << 20)
        try:
            for _ in range(48):  # 48 MiB, past the limit
                self.wfile.write(block)
                EndlessZeros.sent += len(block)
        except OSError:
            pass  # the client hung up

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def zeros_server() -> Iterator[str]:
    with serving(EndlessZeros) as url:
        yield url


def test_a_download_larger_than_any_official_file_is_refused(tmp_path: Path, zeros_server: str) -> None:
    with pytest.raises(DataError, match="more than 33,554,432 bytes, larger than any Fashion-MNIST .gz file") as caught:
        data.download_data(tmp_path / "cache", base_url=zeros_server)
    assert "\n" not in str(caught.value) and not (tmp_path / "cache").exists()


def test_download_offline_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="download failed"):
        data.download_data(tmp_path / "cache", base_url="http://127.0.0.1:9/")
    monkeypatch.setenv("EDGEFMNIST_MIRROR", "http://127.0.0.1:9/")
    monkeypatch.delenv("EDGEFMNIST_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "DEBIAN_DATA_DIR", tmp_path / "no-package")
    with pytest.raises(DataError, match=r"are you offline\? Pass --data-dir or install the Debian package"):
        data.find_data()  # found nowhere: the advice fits
    result = run_in_process("data", "--download")
    assert result.returncode == 1 and result.stderr.rstrip().endswith("dataset-fashion-mnist"), result.stderr
    (tmp_path / "empty").mkdir()
    result = run_in_process("data", "--data-dir", str(tmp_path / "empty"), "--download")
    assert result.returncode == 1 and result.stderr.rstrip().endswith("are you offline?"), result.stderr
    result = run_in_process("data")  # only --download fetches: the mirror is not asked
    assert result.returncode == 1 and "download failed" not in result.stderr, result.stderr
    assert result.stderr.rstrip().endswith("pass --data-dir, or --download to fetch it into the cache"), result.stderr


def test_a_place_nobody_named_that_may_not_be_searched_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_synthetic_dataset(package := tmp_path / "package")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGEFMNIST_DATA", raising=False)
    monkeypatch.setattr(data, "DEBIAN_DATA_DIR", package)
    searched = data.idx_file

    def cache_locked(folder: Path, name: str) -> Path | None:
        if folder == data.default_cache_dir():
            raise PermissionError(13, "Permission denied", str(folder / name))
        return searched(folder, name)

    monkeypatch.setattr(data, "idx_file", cache_locked)
    assert data.find_data(download=False) == data.DataSource(package, "debian package")
    with pytest.raises(DataError, match=r"cache/edgefmnist: cannot read \(Permission denied\)$"):
        data.find_data(data.default_cache_dir())  # named: it is the one asked for


def test_real_data_verifies_with_the_tutorial_split(fashion) -> None:
    assert (len(fashion.train), len(fashion.validation), len(fashion.test)) == (55_000, 5_000, 10_000)
    assert fashion.sha256 == spec.IDX_SHA256
    assert fashion.train.images.dtype == np.uint8 and fashion.train.images.shape[1:] == (28, 28)
    assert np.bincount(fashion.test.labels).tolist() == [1000] * 10
    # the standardisation constants in spec are the training set's statistics
    pixels = np.concatenate([fashion.validation.images, fashion.train.images]).astype(np.float64) / 255
    assert abs(pixels.mean() - spec.PIXEL_MEAN) < 1e-3 and abs(pixels.std() - spec.PIXEL_STD) < 1e-3


# --- names, decompressed .gz files, download only when missing ---------------------------------


def test_names_as_unpackers_write_them_are_accepted(tmp_path: Path, real_data_dir: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    for name in spec.IDX_SHA256:
        source = data.idx_file(real_data_dir, name)
        assert source is not None
        (folder / f"{name}.gz").write_bytes(
            source.read_bytes() if source.suffix == ".gz" else gzip.compress(source.read_bytes(), compresslevel=1)
        )
    renames = {
        "t10k-images-idx3-ubyte.gz": "t10k-images.idx3-ubyte",  # 7-Zip, WinRAR: a dot, decompressed
        "t10k-labels-idx1-ubyte.gz": "t10k-labels.idx1-ubyte",
        "train-images-idx3-ubyte.gz": "train_images_idx3_ubyte.gz",
        "train-labels-idx1-ubyte.gz": "TRAIN-LABELS-IDX1-UBYTE.gz",
    }
    for old, new in renames.items():
        content = (folder / old).read_bytes()
        (folder / old).unlink()
        (folder / new).write_bytes(gzip.decompress(content) if not new.endswith(".gz") else content)
    assert data.find_data(folder) == data.DataSource(folder, "--data-dir")
    split, checksums = data.load_split(folder, "test")
    assert len(split) == 10_000 and set(checksums) == {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}


def test_the_unpacker_name_of_the_real_file_verifies_by_sha256(tmp_path: Path, real_data_dir: Path) -> None:
    for name in spec.IDX_SHA256:
        source = data.idx_file(real_data_dir, name)
        assert source is not None
        plain = gzip.decompress(source.read_bytes()) if source.suffix == ".gz" else source.read_bytes()
        (tmp_path / name.replace("-idx", ".idx")).write_bytes(plain)
    split, checksums = data.load_split(tmp_path, "test")
    assert len(split) == 10_000 and checksums["t10k-images-idx3-ubyte"] == spec.IDX_SHA256["t10k-images-idx3-ubyte"]


def test_the_test_set_alone_serves_what_needs_only_the_test_set(tmp_path: Path, real_data_dir: Path) -> None:
    for name in data.SPLIT_FILES["test"]:  # a board's copy: the two t10k files, about 4 MB
        source = data.idx_file(real_data_dir, name)
        assert source is not None
        (tmp_path / source.name).write_bytes(source.read_bytes())
    assert len(data.load_test_split(tmp_path)) == spec.TEST_SIZE
    with pytest.raises(DataError, match=r"missing Fashion-MNIST files: train-images-idx3-ubyte, train-labels"):
        data.load_fashion_mnist(tmp_path)  # training needs all four
    model = Path(__file__).parents[1] / "models" / "mlp.onnx"
    verified = run_in_process("verify", str(model), "--data-dir", str(tmp_path))
    assert verified.returncode == 0, verified.stderr


def test_a_corrupt_file_in_the_cache_says_how_to_download_it_again(
    tmp_path: Path, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache" / "edgefmnist"
    cache.mkdir(parents=True)
    for name in data.SPLIT_FILES["test"]:
        source = data.idx_file(real_data_dir, name)
        assert source is not None
        (cache / source.name).write_bytes(source.read_bytes()[: 1000 if "images" in name else None])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
    with pytest.raises(
        DataError, match=r"t10k-images.*\(in the cache: edgefmnist data --replace downloads it again\)$"
    ):
        data.load_test_split()
    with pytest.raises(DataError) as named:  # a folder the user named: the fix is theirs
        data.load_test_split(cache)
    assert "--replace" not in str(named.value)


def test_a_near_miss_says_which_names_were_expected(tmp_path: Path) -> None:
    folder = write_synthetic_dataset(tmp_path / "d", train=30, test=10)
    (folder / "t10k-images-idx3-ubyte.gz").rename(folder / "t10k-images-idx3-ubyte (1).gz")
    with pytest.raises(DataError) as caught:
        data.find_data(folder)
    message = str(caught.value)
    assert "missing Fashion-MNIST file: t10k-images-idx3-ubyte (or .gz)" in message
    assert "found t10k-images-idx3-ubyte (1).gz, but expected NAME or NAME.gz" in message and "\n" not in message


def test_a_folder_with_a_data_file_name_is_said_to_be_a_folder(tmp_path: Path) -> None:
    folder = write_synthetic_dataset(tmp_path / "d", train=30, test=10)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    (folder / "t10k-labels-idx1-ubyte.gz").mkdir()
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    (folder / "t10k-images-idx3-ubyte.gz").symlink_to(tmp_path / "gone")
    with pytest.raises(DataError) as caught:
        data.find_data(folder)
    assert str(caught.value).endswith(
        "files: t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each may end with .gz); "
        "t10k-images-idx3-ubyte.gz is a dangling symlink; "
        "t10k-labels-idx1-ubyte.gz is a folder"
    )


def test_a_gz_name_holding_decompressed_idx_is_read(tmp_path: Path) -> None:
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(idx_bytes(images()))  # a browser decompressed it and kept the name
    np.testing.assert_array_equal(data.load_idx_images(path), images())
    path.write_bytes(b"<html>Not found</html>")
    with pytest.raises(DataError, match="not a gzip file, nor an IDX file"):
        data.load_idx_images(path)


def test_download_keeps_present_files_unless_asked_to_replace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = write_synthetic_dataset(tmp_path / "mirror")
    md5 = {name: hashlib.md5((mirror / f"{name}.gz").read_bytes()).hexdigest() for name in spec.DOWNLOAD_MD5}
    monkeypatch.setattr(spec, "DOWNLOAD_MD5", md5)
    cache = write_synthetic_dataset(tmp_path / "cache", seed=1)
    before = {p.name: p.read_bytes() for p in cache.iterdir()}
    data.download_data(cache, base_url="http://127.0.0.1:9/")  # offline, and nothing is missing: no request
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == before
    data.download_data(cache, base_url=mirror.as_uri() + "/", replace=True)
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == {p.name: p.read_bytes() for p in mirror.iterdir()}


def test_data_download_offline_with_the_data_present_says_where_it_is(tmp_path: Path, real_data_dir: Path) -> None:
    import json

    from test_cli import run

    offline = {"EDGEFMNIST_MIRROR": "http://127.0.0.1:9/", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = run("data", "--download", "--data-dir", str(real_data_dir), "--json", env=offline)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["folder"] == str(real_data_dir) and report["downloaded"] is False
    assert not (tmp_path / "cache").exists()
    text = run("data", "--download", "--data-dir", str(real_data_dir), env=offline)
    assert text.returncode == 0
    assert text.stdout.startswith(
        "Already present, nothing downloaded (--replace downloads a fresh copy into the cache)"
    )


@pytest.fixture
def debian_mirror(tmp_path: Path, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Downloads come from the Debian package's files, into ``tmp_path/cache``; returns that cache.

    The package compressed the official content itself, so its files pass by their content's SHA-256."""
    monkeypatch.setenv("EDGEFMNIST_MIRROR", real_data_dir.as_uri())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "edgefmnist"


def test_data_replace_says_the_files_were_downloaded(debian_mirror: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from edgefmnist import cli

    cli.data(data_dir=None, download=False, replace=True, json_output=True)
    report = json.loads(capsys.readouterr().out)
    assert report["downloaded"] is True and report["origin"] == "download"
    assert report["folder"] == str(debian_mirror)


def test_data_download_says_so_in_its_text(
    tmp_path: Path, debian_mirror: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgefmnist import cli

    (tmp_path / "empty").mkdir()
    cli.data(data_dir=tmp_path / "empty", download=True, replace=False, json_output=False)
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"Fashion-MNIST in {debian_mirror} (download): SHA-256 verified"


def test_swapped_official_files_are_named_for_what_they_hold(tmp_path: Path, real_data_dir: Path) -> None:
    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / f"{name}.gz").symlink_to(real_data_dir / f"{name}.gz")
    (tmp_path / "train-images-idx3-ubyte.gz").symlink_to(real_data_dir / "t10k-images-idx3-ubyte.gz")
    (tmp_path / "t10k-images-idx3-ubyte.gz").symlink_to(real_data_dir / "train-images-idx3-ubyte.gz")
    with pytest.raises(DataError) as raised:
        data.load_split(tmp_path, "test")
    assert str(raised.value) == (
        f"{tmp_path / 't10k-images-idx3-ubyte.gz'}: holds the official train-images-idx3-ubyte, "
        "not t10k-images-idx3-ubyte (files swapped or misnamed?)"
    )
