"""Which weights each model needs, where to find them, and proof that a file is the right one.

A small declarative registry (as in timm): each model names its architecture, its input size,
the Hugging Face Hub files that hold its weights, and the checksums of every published file.
``resolve_weights`` is the one code path that turns a model name into a verified local file:

1. an explicit file: the ``weights`` argument (CLI ``--weights``), else the environment variable
   ``U2NET_<MODEL>_WEIGHTS`` (e.g. ``U2NET_U2NETP_WEIGHTS``), else ``U2NET_WEIGHTS``;
2. the folder ``U2NET_HOME`` (default ``~/.u2net``, rembg's folder and file names) holding
   ``<model>.onnx`` or ``<model>.pth``;
3. the Hugging Face Hub, through ``huggingface_hub.hf_hub_download`` into the standard Hub
   cache (later runs read the cache, with no network), trying each source in turn.

Every file is checked against a known sha256 / md5 before it is returned. A downloaded file
that does not match is deleted from the Hub cache, so it never stays there looking valid.
When nothing works, one ``WeightsError`` names every place that was tried and how to supply
the file by hand.

Environment (read at call time, so tests and Spaces can change it without re-importing):
    U2NET_WEIGHTS              one weights file, used for the model being asked for (skipped
                               for a model when the file is recognisably another model's weights)
    U2NET_<MODEL>_WEIGHTS      one weights file for that model only; wins over U2NET_WEIGHTS
    U2NET_HOME                 folder of <model>.onnx / <model>.pth files (default ~/.u2net)
    U2NET_<MODEL>_REPO         Hub repository to try first for that model (e.g. me/my-u2net)
    U2NET_<MODEL>_FILE         file name inside that repository (default: the model's usual one)
    U2NET_<MODEL>_REVISION     branch, tag or commit of that repository (default: main)
    U2NET_<MODEL>_REPO_TYPE    "model" (default), "space" or "dataset"
    U2NET_<MODEL>_SHA256 / _MD5  checksum of your own copy; without one, the file must be one of
                               the model's published files
    HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE  as in huggingface_hub
<MODEL> is the model name in capitals: U2NET, U2NETP, U2NET_HUMAN_SEG, U2NET_PORTRAIT.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import WeightsError

log = logging.getLogger(__name__)

__all__ = [
    "Checksum",
    "ModelSpec",
    "REGISTRY",
    "Source",
    "WEIGHT_SUFFIXES",
    "get_spec",
    "hub_sources",
    "resolve_weights",
    "u2net_home",
    "verify_file",
]

# The formats u2net.model.load_model reads.
WEIGHT_SUFFIXES = (".onnx", ".pth", ".pt")


@dataclass(frozen=True)
class Source:
    """One place on the Hugging Face Hub that holds a model's weights file.

    Attributes:
        repo_id: "owner/name" of the repository.
        filename: path of the file inside the repository.
        sha256, md5: the file's checksum (at least one; both are checked when both are given).
        revision: branch, tag or commit; None means "main".
        repo_type: "model", "space" or "dataset".
    """

    repo_id: str
    filename: str
    sha256: str | None = None
    md5: str | None = None
    revision: str | None = None
    repo_type: str = "model"

    def url(self, endpoint: str | None = None) -> str:
        """The download address of this file (what to fetch by hand)."""
        base = (endpoint or _hub_endpoint() or "https://huggingface.co").rstrip("/")
        prefix = {"model": "", "space": "spaces/", "dataset": "datasets/"}.get(self.repo_type, "")
        return f"{base}/{prefix}{self.repo_id}/resolve/{self.revision or 'main'}/{self.filename}"

    def describe(self) -> str:
        kind = "" if self.repo_type == "model" else f"{self.repo_type} "
        rev = f"@{self.revision}" if self.revision else ""
        return f"{kind}{self.repo_id}{rev} / {self.filename}"


@dataclass(frozen=True)
class Checksum:
    """A published weights file of a model, known by its checksum (any file name, any folder)."""

    filename: str
    sha256: str | None = None
    md5: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """Everything the engine needs to know about one model.

    Attributes:
        name: registry name ("u2netp", …).
        architecture: "u2net" or "u2netp" (the network built by u2net.model).
        input_size: side of the square network input: 320, or 512 for the portrait model.
        sources: Hub files holding the weights, tried in order.
        description: one line for users.
        local_names: file names looked for in U2NET_HOME.
        checksums: every published file of this model; a local or explicit file that matches one
            of them is this model's weights.
    """

    name: str
    architecture: str
    input_size: int
    sources: tuple[Source, ...]
    description: str
    local_names: tuple[str, ...]
    checksums: tuple[Checksum, ...] = field(default=())


_REMBG_REPO = "tomjackson2023/rembg"  # rembg's release .onnx files, mirrored on the Hub


def _spec(name: str, architecture: str, input_size: int, description: str,
          sources: tuple[Source, ...], extra: tuple[Checksum, ...] = ()) -> ModelSpec:
    checksums = tuple(Checksum(s.filename.rsplit("/", 1)[-1], s.sha256, s.md5) for s in sources)
    unique = tuple(dict.fromkeys(checksums + extra))
    return ModelSpec(name, architecture, input_size, sources, description,
                     (f"{name}.onnx", f"{name}.pth"), unique)


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _spec("u2net", "u2net", 320, "U²-Net, full size (176 MB): general salient objects",
              (Source(_REMBG_REPO, "u2net.onnx",
                      sha256="8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491",
                      md5="60024c5c889badc19c04ad937298a77b"),),
              # The authors' checkpoint, for users who have it in U2NET_HOME.
              (Checksum("u2net.pth", md5="09fb4e49b7f785c9f855baf94916840a"),)),
        _spec("u2netp", "u2netp", 320, "U²-Netp, small (4.7 MB): general salient objects, fast",
              (Source(_REMBG_REPO, "u2netp.onnx",
                      sha256="309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
                      md5="8e83ca70e441ab06c318d82300c84806"),),
              (Checksum("u2netp.pth", md5="e4f636406ca4e2af789941e7f139ee2e"),)),
        _spec("u2net_human_seg", "u2net", 320, "U²-Net trained on people (human segmentation)",
              (Source(_REMBG_REPO, "u2net_human_seg.onnx", md5="c09ddc2e0104f800e3e1bb4652583d1f"),),
              # rembg's early releases loaded this .pth with this md5.
              (Checksum("u2net_human_seg.pth", md5="347c3d51b01528e5c6c071e3cff1cb55"),)),
        _spec("u2net_portrait", "u2net", 512, "U²-Net portrait drawing (512 × 512 input)",
              # The authors' u2net_portrait.pth (md5 from their release). Hub copies found by
              # searching public code that downloads it with hf_hub_download:
              # huggingface.co/Maxwelltebi/u2net-portrait, and the Space wahaha/u2net_portrait,
              # which carries the authors' repository with saved_models/ inside.
              (Source("Maxwelltebi/u2net-portrait", "u2net_portrait.pth",
                      md5="c7cff57409664b679dc7a5a445b259e4"),
               Source("wahaha/u2net_portrait", "U-2-Net/saved_models/u2net_portrait/u2net_portrait.pth",
                      md5="c7cff57409664b679dc7a5a445b259e4", repo_type="space"))),
    )
}


def get_spec(name: str) -> ModelSpec:
    """The registry entry of a model.

    Parameters:
        name: "u2net", "u2netp", "u2net_human_seg" or "u2net_portrait" (case and surrounding
            spaces ignored).
    Returns:
        The ModelSpec.
    Raises:
        WeightsError naming the known models when the name is unknown.
    """
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in REGISTRY:
        raise WeightsError(f"unknown model {name!r}; known models: {', '.join(REGISTRY)}")
    return REGISTRY[key]


# --------------------------------------------------------------------------------------------
# Checksums


_HASH_CHUNK = 1 << 20
_digest_lock = threading.Lock()
# (real path, size, mtime_ns) -> (sha256, md5): the 176 MB file is hashed once per process, and
# again only when it changes on disk.
_digest_cache: dict[tuple[str, int, int], tuple[str, str]] = {}


def _hash_file(path: str) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def _digests(path: str | os.PathLike) -> tuple[str, str]:
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    with _digest_lock:
        hit = _digest_cache.get(key)
    if hit is None:
        hit = _hash_file(real)
        with _digest_lock:
            _digest_cache[key] = hit
    return hit


def _mismatch(path: str | os.PathLike, sha256: str | None, md5: str | None) -> str | None:
    """None when the file matches every checksum given, else a sentence saying what differs."""
    got_sha, got_md5 = _digests(path)
    if sha256 and got_sha != sha256.lower():
        return f"sha256 is {got_sha}, expected {sha256.lower()}"
    if md5 and got_md5 != md5.lower():
        return f"md5 is {got_md5}, expected {md5.lower()}"
    return None


def verify_file(path: str | os.PathLike, sha256: str | None = None, md5: str | None = None) -> None:
    """Check a file against a known checksum (hashed in chunks, cached per path, size and mtime).

    Parameters:
        path: the file.
        sha256, md5: expected hex digests; at least one. Both are checked when both are given.
    Raises:
        WeightsError when the file is missing or does not match.
        ValueError when no checksum is given.
    """
    if not sha256 and not md5:
        raise ValueError("verify_file needs a sha256 or an md5 to check against")
    try:
        problem = _mismatch(path, sha256, md5)
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc.strerror or exc}") from exc
    if problem:
        raise WeightsError(f"weights file {path} is corrupt or not the expected file: its {problem}")


def _known_match(path: str | os.PathLike, checksums: tuple[Checksum, ...]) -> Checksum | None:
    got_sha, got_md5 = _digests(path)
    for c in checksums:
        if (c.sha256 or c.md5) and (not c.sha256 or c.sha256 == got_sha) and (not c.md5 or c.md5 == got_md5):
            return c
    return None


def _owner_of(path: str | os.PathLike) -> ModelSpec | None:
    """The registry model whose published file this is, if any."""
    for spec in REGISTRY.values():
        if _known_match(path, spec.checksums):
            return spec
    return None


# --------------------------------------------------------------------------------------------
# Environment, read at call time


def _env_key(spec: ModelSpec, what: str) -> str:
    return f"U2NET_{spec.name.upper()}_{what}"


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _is_true(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def u2net_home() -> Path:
    """The U2NET_HOME folder (default ~/.u2net, the folder rembg uses)."""
    return Path(os.path.expandvars(os.path.expanduser(_env("U2NET_HOME") or "~/.u2net")))


def _hub_endpoint() -> str | None:
    # huggingface_hub reads HF_ENDPOINT once, at import; we read it on every call.
    value = _env("HF_ENDPOINT")
    return value.rstrip("/") if value else None


def _hub_cache_dir() -> Path:
    explicit = _env("HF_HUB_CACHE") or _env("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(os.path.expanduser(explicit)))
    home = _env("HF_HOME")
    if home:
        return Path(os.path.expandvars(os.path.expanduser(home))) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _hub_offline() -> bool:
    """Offline when the environment says so now, or said so when huggingface_hub was imported."""
    from huggingface_hub import constants

    return (_is_true(os.environ.get("HF_HUB_OFFLINE")) or _is_true(os.environ.get("TRANSFORMERS_OFFLINE"))
            or bool(constants.HF_HUB_OFFLINE))


def hub_sources(spec: ModelSpec) -> tuple[Source, ...]:
    """The Hub sources to try for a model, in order: an override from the environment first
    (U2NET_<MODEL>_REPO / _FILE / _REVISION / _REPO_TYPE / _SHA256 / _MD5), then the defaults.

    An override without a checksum of its own must hold one of the model's published files.
    """
    repo, filename = _env(_env_key(spec, "REPO")), _env(_env_key(spec, "FILE"))
    if not repo and not filename:
        return spec.sources
    first = spec.sources[0]
    sha256, md5 = _env(_env_key(spec, "SHA256")), _env(_env_key(spec, "MD5"))
    override = Source(
        repo_id=repo or first.repo_id,
        filename=filename or first.filename,
        sha256=sha256.lower() if sha256 else None,
        md5=md5.lower() if md5 else None,
        revision=_env(_env_key(spec, "REVISION")),
        repo_type=_env(_env_key(spec, "REPO_TYPE")) or ("model" if repo else first.repo_type),
    )
    if not sha256 and not md5 and override.filename == first.filename:
        override = replace(override, sha256=first.sha256, md5=first.md5)
    return (override,) + tuple(s for s in spec.sources if s != override)


def _owner_checksum(spec: ModelSpec) -> Checksum | None:
    sha256, md5 = _env(_env_key(spec, "SHA256")), _env(_env_key(spec, "MD5"))
    if sha256 or md5:
        return Checksum("(yours)", sha256.lower() if sha256 else None, md5.lower() if md5 else None)
    return None


def _accepted_checksums(spec: ModelSpec) -> tuple[Checksum, ...]:
    """The published files of the model, plus the owner's own file when they gave its checksum."""
    own = _owner_checksum(spec)
    return spec.checksums + ((own,) if own else ())


# --------------------------------------------------------------------------------------------
# The three places


def _explicit_file(spec: ModelSpec, path: str | os.PathLike, origin: str) -> Path:
    """Check a file the user named. Their own (unpublished) weights are accepted with a warning,
    unless U2NET_<MODEL>_SHA256/_MD5 says which file it must be; another registry model's
    published file is refused."""
    p = Path(os.path.expandvars(os.path.expanduser(os.fspath(path))))
    if not p.is_file():
        raise WeightsError(f"weights file {p} ({origin}) does not exist")
    if p.suffix.lower() not in WEIGHT_SUFFIXES:
        raise WeightsError(f"weights file {p} ({origin}) must be a .onnx, .pth or .pt file")
    own = _owner_checksum(spec)
    if own:
        try:
            verify_file(p, own.sha256, own.md5)
        except WeightsError as exc:
            raise WeightsError(f"{exc} (checksum from {_env_key(spec, 'SHA256')}/"
                               f"{_env_key(spec, 'MD5')}; {origin})") from exc
        return p
    if _known_match(p, spec.checksums):
        return p
    owner = _owner_of(p)
    if owner is not None:
        raise WeightsError(f"weights file {p} ({origin}) holds the {owner.name} weights, not {spec.name}'s; "
                           f"ask for model {owner.name!r} or give the {spec.name} file")
    log.warning("%s (%s) is not a published %s file (no known checksum matches); loading it as "
                "your own %s weights", p, origin, spec.name, spec.architecture)
    return p


def _from_home(spec: ModelSpec, tried: list[str]) -> Path | None:
    home = u2net_home()
    accepted = _accepted_checksums(spec)
    missing = []
    for name in spec.local_names:
        p = home / name
        if not p.is_file():
            missing.append(name)
            continue
        if _known_match(p, accepted):
            return p
        # The user's folder: refuse the file but leave it for them to look at.
        got_sha, got_md5 = _digests(p)
        why = f"{p} is present but corrupt or not a published {spec.name} file (sha256 {got_sha}); refused"
        log.warning(why)
        tried.append(f"U2NET_HOME: {why}")
    if missing:
        tried.append(f"U2NET_HOME folder {home}: no {' or '.join(missing)}")
    return None


def _evict(pointer: str | os.PathLike, cache_dir: Path) -> None:
    """Delete a refused file from the Hub cache: the snapshot entry and the blob it points to."""
    pointer = Path(pointer)
    blob = Path(os.path.realpath(pointer))
    cache_root = os.path.realpath(cache_dir)
    for p in (pointer, blob):
        # Never delete outside the Hub cache, whatever a symlink says.
        if os.path.commonpath([cache_root, os.path.realpath(p.parent)]) == cache_root:
            try:
                p.unlink(missing_ok=True)
            except OSError as exc:  # pragma: no cover - read-only cache
                log.warning("could not remove refused file %s from the Hub cache: %s", p, exc)


def _silent_tqdm():
    from tqdm.auto import tqdm

    class Silent(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Silent


def _unreachable(exc: Exception) -> bool:
    from huggingface_hub.errors import LocalEntryNotFoundError

    return isinstance(exc, LocalEntryNotFoundError)


def _hub_reason(exc: Exception, local_only: bool, cache_dir: Path) -> str:
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, LocalEntryNotFoundError):
        if _hub_offline():
            return f"offline (HF_HUB_OFFLINE) and not in the Hub cache {cache_dir}"
        if local_only:
            return f"not in the Hub cache {cache_dir} (the Hub was unreachable for the previous source)"
        return f"the Hub could not be reached and the file is not in the Hub cache {cache_dir}"
    if isinstance(exc, RevisionNotFoundError):
        return "revision not found on the Hub"
    if isinstance(exc, RepositoryNotFoundError):
        return "repository not found on the Hub (404, or private)"
    if isinstance(exc, EntryNotFoundError):
        return "the repository has no such file (404)"
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line}"[:300]


def _from_hub(spec: ModelSpec, progress: bool, tried: list[str]) -> Path | None:
    from huggingface_hub import hf_hub_download

    endpoint, cache_dir = _hub_endpoint(), _hub_cache_dir()
    local_only = _hub_offline()
    for source in hub_sources(spec):
        where = f"Hugging Face Hub {source.describe()} ({source.url(endpoint)})"
        try:
            path = hf_hub_download(
                source.repo_id, source.filename, revision=source.revision, repo_type=source.repo_type,
                cache_dir=cache_dir, endpoint=endpoint, local_files_only=local_only,
                tqdm_class=None if progress else _silent_tqdm(),
            )
        except Exception as exc:  # every failure becomes one line of the final message
            reason = _hub_reason(exc, local_only, cache_dir)
            log.info("%s: %s", where, reason)
            tried.append(f"{where}: {reason}")
            if _unreachable(exc) and not local_only:
                # huggingface_hub has already retried for ~25 s; the next sources are only
                # looked up in the cache rather than waiting that long again for each.
                local_only = True
            continue
        if source.sha256 or source.md5:
            problem = _mismatch(path, source.sha256, source.md5)
        else:
            problem = None if _known_match(path, _accepted_checksums(spec)) else (
                "checksum matches none of the published files")
        if problem is None:
            return Path(path)
        _evict(path, cache_dir)
        reason = (f"the file from the Hub is corrupt or not the expected file ({problem}); "
                  "refused and removed from the Hub cache")
        log.warning("%s: %s", where, reason)
        tried.append(f"{where}: {reason}")
    return None


def resolve_weights(name: str, weights: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """A verified local weights file for a model.

    Order: the explicit ``weights`` file, else U2NET_<MODEL>_WEIGHTS, else U2NET_WEIGHTS; then
    U2NET_HOME/<model>.onnx or .pth; then each Hub source (downloaded once into the Hub cache).

    Parameters:
        name: registry name of the model (see REGISTRY).
        weights: an explicit .onnx or .pth file; it must exist (no fallback when it does not).
        progress: show a progress bar while downloading.
    Returns:
        Path of a file whose checksum matches a published file of the model (or, for an explicit
        file, the user's own weights; see the module docstring).
    Raises:
        WeightsError with every place tried and how to supply the file by hand.
    """
    spec = get_spec(name)
    if weights is not None:
        return _explicit_file(spec, weights, "given as weights")
    per_model = _env(_env_key(spec, "WEIGHTS"))
    if per_model:
        return _explicit_file(spec, per_model, f"from {_env_key(spec, 'WEIGHTS')}")

    tried: list[str] = []
    shared = _env("U2NET_WEIGHTS")
    if shared:
        p = Path(os.path.expanduser(shared))
        owner = _owner_of(p) if p.is_file() else None
        if owner is not None and owner.name != spec.name:
            # One variable, several models in one app: it names another model's file.
            tried.append(f"U2NET_WEIGHTS={p}: holds the {owner.name} weights, so it is not used for {spec.name}")
        else:
            return _explicit_file(spec, p, "from U2NET_WEIGHTS")
    else:
        tried.append(f"explicit file: none given (weights argument, {_env_key(spec, 'WEIGHTS')}, U2NET_WEIGHTS)")

    found = _from_home(spec, tried) or _from_hub(spec, progress, tried)
    if found is not None:
        log.info("weights for %s: %s", spec.name, found)
        return found
    raise WeightsError(_not_found_message(spec, tried))


def _not_found_message(spec: ModelSpec, tried: list[str]) -> str:
    first = spec.sources[0]  # the published file, whatever an override says
    check = f"sha256 {first.sha256}" if first.sha256 else f"md5 {first.md5}"
    local = u2net_home() / first.filename.rsplit("/", 1)[-1]
    lines = [f"no weights for model {spec.name!r}. Tried, in order:"]
    lines += [f"  {i}. {t}" for i, t in enumerate(tried, 1)]
    lines.append(
        f"To supply the file by hand: download {first.url()} ({check}) and save it as {local} "
        f"(or anywhere, then pass weights=/path/to/file, the CLI's --weights, or set "
        f"{_env_key(spec, 'WEIGHTS')}). "
        + ("To download it here, unset HF_HUB_OFFLINE." if _hub_offline()
           else "To download it here, check the network connection (or HF_ENDPOINT).")
    )
    return "\n".join(lines)
