"""Weights: registry, resolution order, checksums, and downloads from a local stand-in for the Hub.

The Hub here is tests/hub_server.py: a real HTTP server on 127.0.0.1 that answers
huggingface_hub.hf_hub_download as huggingface.co does, serving the real u2netp.onnx.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest
from hub_server import FakeHub, go_online
from huggingface_hub import try_to_load_from_cache

from u2net import weights
from u2net.errors import WeightsError
from u2net.weights import REGISTRY, get_spec, resolve_weights, verify_file

U2NETP_SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
U2NETP_MD5 = "8e83ca70e441ab06c318d82300c84806"
REMBG = "tomjackson2023/rembg"


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _blobs(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("blobs/*") if p.is_file()]


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "hf_home" / "hub"


@pytest.fixture
def hub(monkeypatch, tmp_path, cache):
    """A running fake Hub, online, with a private Hub cache and an empty U2NET_HOME."""
    server = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    go_online(monkeypatch, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def rembg_hub(hub, weights_dir):
    """The fake Hub serving the real u2netp.onnx where the registry looks for it."""
    hub.add_file(REMBG, "u2netp.onnx", weights_dir / "u2netp.onnx")
    return hub


def _resolve_requests(hub: FakeHub) -> list[tuple[str, str]]:
    # huggingface_hub may also ask {endpoint}/api/... for its own purposes; count file traffic only.
    return [r for r in hub.requests if "/resolve/" in r[1] or r[1].startswith("cdn/")]


# ---- registry


def test_registry_describes_every_model():
    assert set(REGISTRY) == {"u2net", "u2netp", "u2net_human_seg", "u2net_portrait"}
    for name, spec in REGISTRY.items():
        assert spec.name == name
        assert spec.architecture in ("u2net", "u2netp")
        assert spec.local_names == (f"{name}.onnx", f"{name}.pth")
        assert spec.sources and all(s.sha256 or s.md5 for s in spec.sources)
        assert spec.description
    assert REGISTRY["u2netp"].architecture == "u2netp"
    assert REGISTRY["u2net_portrait"].input_size == 512
    assert {REGISTRY[n].input_size for n in ("u2net", "u2netp", "u2net_human_seg")} == {320}
    assert len(REGISTRY["u2net_portrait"].sources) == 2


def test_unknown_model_names_the_known_ones():
    for call in (lambda: get_spec("u2net_xl"), lambda: resolve_weights("u2net_xl")):
        with pytest.raises(WeightsError) as err:
            call()
        assert "u2net_xl" in str(err.value)
        for name in REGISTRY:
            assert name in str(err.value)
    assert get_spec(" U2NETP ") is REGISTRY["u2netp"]


# ---- checksums


def test_verify_file_accepts_the_real_file_and_refuses_a_changed_one(weights_dir, tmp_path):
    real = weights_dir / "u2netp.onnx"
    verify_file(real, sha256=U2NETP_SHA256)
    verify_file(real, md5=U2NETP_MD5)
    verify_file(real, sha256=U2NETP_SHA256, md5=U2NETP_MD5)
    with pytest.raises(WeightsError, match="md5"):
        verify_file(real, sha256=U2NETP_SHA256, md5="0" * 32)
    changed = tmp_path / "u2netp.onnx"
    data = bytearray(real.read_bytes())
    data[len(data) // 2] ^= 0xFF
    changed.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupt or not the expected file.*sha256"):
        verify_file(changed, sha256=U2NETP_SHA256)
    with pytest.raises(WeightsError, match="cannot read"):
        verify_file(tmp_path / "missing.onnx", md5=U2NETP_MD5)
    with pytest.raises(ValueError):
        verify_file(real)


def test_verification_is_cached_until_the_file_changes(monkeypatch, tmp_path):
    calls = []
    original = weights._hash_file
    monkeypatch.setattr(weights, "_hash_file", lambda p: calls.append(p) or original(p))
    f = tmp_path / "w.onnx"
    f.write_bytes(b"first")
    good = hashlib.sha256(b"first").hexdigest()
    verify_file(f, sha256=good)
    verify_file(f, sha256=good)
    assert len(calls) == 1
    f.write_bytes(b"second, longer")
    with pytest.raises(WeightsError):
        verify_file(f, sha256=good)
    assert len(calls) == 2


# ---- the Hub


def test_first_call_downloads_and_verifies(rembg_hub, cache):
    path = resolve_weights("u2netp", progress=False)
    assert path.name == "u2netp.onnx"
    assert cache in path.parents
    assert _sha256(path) == U2NETP_SHA256
    traffic = _resolve_requests(rembg_hub)
    assert ("HEAD", f"hub/{REMBG}/resolve/main/u2netp.onnx") in traffic
    assert ("GET", f"cdn/lfs/{U2NETP_SHA256}") in traffic


def test_later_calls_load_from_the_cache_without_the_hub(rembg_hub, monkeypatch):
    first = resolve_weights("u2netp", progress=False)
    downloads = [r for r in rembg_hub.requests if r[1].startswith("cdn/")]
    assert len(downloads) == 1
    rembg_hub.stop()  # connections are now refused
    assert resolve_weights("u2netp", progress=False) == first
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_weights("u2netp", progress=False) == first
    assert _sha256(first) == U2NETP_SHA256


def test_a_file_with_the_wrong_checksum_is_refused_and_leaves_no_cache_entry(hub, weights_dir, cache):
    data = bytearray((weights_dir / "u2netp.onnx").read_bytes())
    data[1000] ^= 0xFF  # one flipped byte: same size, wrong file
    hub.add_file(REMBG, "u2netp.onnx", bytes(data))
    with pytest.raises(WeightsError) as err:
        resolve_weights("u2netp", progress=False)
    msg = str(err.value)
    assert "corrupt or not the expected file" in msg and U2NETP_SHA256 in msg
    assert "removed from the Hub cache" in msg
    assert _blobs(cache) == []
    assert not isinstance(try_to_load_from_cache(REMBG, "u2netp.onnx", cache_dir=cache), str)
    # The refused file does not linger: once the Hub serves the right file, it is used.
    hub.add_file(REMBG, "u2netp.onnx", weights_dir / "u2netp.onnx")
    assert _sha256(resolve_weights("u2netp", progress=False)) == U2NETP_SHA256


def test_a_cached_file_corrupted_on_disk_is_refused_and_removed(rembg_hub, cache, monkeypatch):
    path = resolve_weights("u2netp", progress=False)
    blob = Path(os.path.realpath(path))
    blob.write_bytes(b"not a model any more")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="corrupt or not the expected file"):
        resolve_weights("u2netp", progress=False)
    assert not blob.exists() and not path.exists()
    assert _blobs(cache) == []


@pytest.mark.parametrize("first_repo", ["someone/missing-repo", "someone/empty-repo"])
def test_a_404_on_the_first_source_falls_through_to_the_next(rembg_hub, monkeypatch, first_repo):
    rembg_hub.add_repo("someone/empty-repo")
    monkeypatch.setenv("U2NET_U2NETP_REPO", first_repo)
    path = resolve_weights("u2netp", progress=False)
    assert f"models--{REMBG.replace('/', '--')}" in str(path)
    assert _sha256(path) == U2NETP_SHA256
    heads = [p for m, p in _resolve_requests(rembg_hub) if m == "HEAD"]
    assert heads == [f"hub/{first_repo}/resolve/main/u2netp.onnx", f"hub/{REMBG}/resolve/main/u2netp.onnx"]


def test_portrait_tries_both_of_its_sources(hub):
    # No first repository (404); the second (a Space) holds a file that is not the model.
    second = REGISTRY["u2net_portrait"].sources[1]
    assert second.repo_type == "space"
    hub.add_file(second.repo_id, second.filename, b"not the portrait model", repo_type="space")
    with pytest.raises(WeightsError) as err:
        resolve_weights("u2net_portrait", progress=False)
    msg = str(err.value)
    first = REGISTRY["u2net_portrait"].sources[0]
    assert f"{first.repo_id} / {first.filename}" in msg and "repository not found" in msg
    assert second.repo_id in msg and "corrupt or not the expected file" in msg
    assert ("HEAD", f"hub/spaces/{second.repo_id}/resolve/main/{second.filename}") in hub.requests


def test_owner_override_of_repo_and_file(rembg_hub, weights_dir, monkeypatch):
    # A Space owner hosting their own copy of the published file.
    rembg_hub.add_file("owner/my-copy", "weights/small.onnx", weights_dir / "u2netp.onnx")
    monkeypatch.setenv("U2NET_U2NETP_REPO", "owner/my-copy")
    monkeypatch.setenv("U2NET_U2NETP_FILE", "weights/small.onnx")
    path = resolve_weights("u2netp", progress=False)
    assert "models--owner--my-copy" in str(path) and path.name == "small.onnx"
    assert _sha256(path) == U2NETP_SHA256


def test_owner_override_with_their_own_weights_needs_their_checksum(rembg_hub, monkeypatch):
    own = b"the owner's fine-tuned weights"
    rembg_hub.add_file("owner/tuned", "u2netp.onnx", own, lfs=False)  # a small file: served inline
    monkeypatch.setenv("U2NET_U2NETP_REPO", "owner/tuned")
    # Without a checksum of their own, a file that is not the published one is refused, and
    # the published file is used instead.
    fallback = resolve_weights("u2netp", progress=False)
    assert _sha256(fallback) == U2NETP_SHA256
    monkeypatch.setenv("U2NET_U2NETP_SHA256", hashlib.sha256(own).hexdigest())
    path = resolve_weights("u2netp", progress=False)
    assert "models--owner--tuned" in str(path) and path.read_bytes() == own


# ---- U2NET_HOME and explicit files


def test_a_file_in_u2net_home_is_used_without_network(hub, weights_dir, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(weights_dir))
    assert resolve_weights("u2netp") == weights_dir / "u2netp.onnx"
    assert resolve_weights("u2net") == weights_dir / "u2net.onnx"
    assert hub.requests == []


def test_a_corrupt_file_in_u2net_home_is_refused_but_kept(rembg_hub, tmp_path):
    bad = tmp_path / "u2net_home" / "u2netp.onnx"
    bad.write_bytes(b"half a download")
    path = resolve_weights("u2netp", progress=False)
    assert path != bad and _sha256(path) == U2NETP_SHA256
    assert bad.read_bytes() == b"half a download"  # the user's folder is theirs to clean


def test_an_explicit_file_wins(hub, weights_dir, tmp_path, monkeypatch):
    (tmp_path / "u2net_home" / "u2netp.onnx").write_bytes(b"junk")
    real = weights_dir / "u2netp.onnx"
    assert resolve_weights("u2netp", weights=real) == real
    assert resolve_weights("u2netp", weights=str(real)) == real
    monkeypatch.setenv("U2NET_WEIGHTS", str(real))
    assert resolve_weights("u2netp") == real
    monkeypatch.setenv("U2NET_U2NETP_WEIGHTS", str(real))
    assert resolve_weights("u2netp") == real
    assert hub.requests == []


def test_explicit_files_are_checked(weights_dir, tmp_path, monkeypatch, caplog):
    for var in ("U2NET_WEIGHTS", "U2NET_U2NETP_SHA256", "U2NET_U2NETP_MD5"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_weights("u2netp", weights=tmp_path / "nope.onnx")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(WeightsError, match=r"\.onnx, \.pth or \.pt file"):
        resolve_weights("u2netp", weights=text)
    with pytest.raises(WeightsError, match="holds the u2net weights, not u2netp's"):
        resolve_weights("u2netp", weights=weights_dir / "u2net.onnx")
    # The user's own weights (no published checksum): accepted, with a warning.
    own = tmp_path / "my_u2netp.onnx"
    own.write_bytes(b"my own training run")
    with caplog.at_level(logging.WARNING, logger="u2net.weights"):
        assert resolve_weights("u2netp", weights=own) == own
    assert "not a published u2netp file" in caplog.text
    # ... unless the checksum it must have is given.
    monkeypatch.setenv("U2NET_U2NETP_SHA256", "0" * 64)
    with pytest.raises(WeightsError, match="U2NET_U2NETP_SHA256"):
        resolve_weights("u2netp", weights=own)


def test_u2net_weights_is_not_used_for_another_models_file(hub, weights_dir, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(weights_dir))
    monkeypatch.setenv("U2NET_WEIGHTS", str(weights_dir / "u2net.onnx"))
    assert resolve_weights("u2net") == weights_dir / "u2net.onnx"
    assert resolve_weights("u2netp") == weights_dir / "u2netp.onnx"


# ---- nothing anywhere


def test_nothing_anywhere_gives_one_error_naming_every_place(hub, tmp_path, monkeypatch, cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        resolve_weights("u2net_portrait", progress=False)
    msg = str(err.value)
    home = tmp_path / "u2net_home"
    assert "explicit file: none given" in msg and "U2NET_U2NET_PORTRAIT_WEIGHTS" in msg
    assert str(home) in msg and "u2net_portrait.onnx" in msg and "u2net_portrait.pth" in msg
    for source in REGISTRY["u2net_portrait"].sources:
        assert f"{source.repo_id} / {source.filename}" in msg
    assert msg.count("offline") >= 2 and str(cache) in msg
    assert "To supply the file by hand" in msg
    assert f"{hub.endpoint}/Maxwelltebi/u2net-portrait/resolve/main/u2net_portrait.pth" in msg
    assert "c7cff57409664b679dc7a5a445b259e4" in msg and "unset HF_HUB_OFFLINE" in msg
    assert hub.requests == []


def test_nothing_on_the_hub_online(hub):
    with pytest.raises(WeightsError) as err:
        resolve_weights("u2netp", progress=False)
    msg = str(err.value)
    assert f"{REMBG} / u2netp.onnx" in msg and "repository not found" in msg
    assert "To supply the file by hand" in msg


# ---- end to end


def test_predictor_fetches_u2netp_from_the_hub_on_first_use(rembg_hub, reference_dir, cache):
    import numpy as np
    from PIL import Image

    from u2net.predictor import Predictor

    predictor = Predictor("u2netp", device="cpu")  # U2NET_HOME is empty: only the Hub has it
    image = reference_dir / "images" / "bike.jpg"
    mask = predictor.predict(image)
    assert cache in predictor.weights_path.parents
    assert any(path.startswith("cdn/lfs/") for _, path in rembg_hub.requests)
    published = Image.open(reference_dir / "u2netp_results" / "bike.png").convert("L")
    assert mask.mode == "L" and mask.size == published.size
    mae = np.abs(np.asarray(mask, np.float64) - np.asarray(published, np.float64)).mean() / 255
    print(f"bike.jpg, u2netp from the fake Hub: MAE {mae:.5f} against the published mask")
    assert mae <= 0.003
