"""Published weights: the manifest (``manifest.json``, data), their pretrained cfgs, and verified resolution.

A tag's source is a file shipped in this package (``package``) or a file on the Hugging Face hub (``hub``,
``filename``, optional ``revision``), with its sha256 and size. ``build`` (the families' create function) calls
``verified_file`` before timm loads anything, so a plain ``timm.create_model(tag, pretrained=True)`` is
verified. Where the manifest has no hash yet (weights converted from timm's hub files, which this project's
machines cannot reach to hash), the first file a model loads is pinned in ``<cache>/pins.json`` and every later
load is held to it. A mismatch raises ``WeightsError`` naming the tag and both hashes, and the file is
removed from the cache. ``OPTNETS_WEIGHTS_DIR`` (a folder of ``<tag>.safetensors``) and ``HF_HUB_OFFLINE=1`` work
offline.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Callable

from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
from safetensors.torch import load_file
from timm.models import PretrainedCfg

MANIFEST: dict = json.loads(resources.files(__package__).joinpath('manifest.json').read_text())
WEIGHTS_DIR = 'OPTNETS_WEIGHTS_DIR'
SOURCE_CFG_KEYS = (
    'license',
    'interpolation',
    'crop_pct',
    'crop_mode',
    'input_size',
    'test_input_size',
    'test_crop_pct',
    'pool_size',
    'mean',
    'std',
    'num_classes',
    'origin_url',
    'paper_ids',
)


class WeightsError(RuntimeError):
    """A weights file that is missing or does not match its manifest entry."""


def pins_file() -> Path:
    return Path(os.environ.get('OPTNETS_CACHE', Path.home() / '.cache' / 'optnets')) / 'pins.json'


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def pretrained_cfgs(family: str, base: PretrainedCfg) -> dict:
    """``{tag: cfg}`` of the family's published weights, for ``generate_default_cfgs``. A converted tag copies its
    source's metadata from timm; a shipped one carries its own cfg in the manifest. ``base`` builds the cfg."""
    import timm

    cfgs = {}
    for tag, entry in MANIFEST.items():
        if not tag.startswith(family + '_'):
            continue
        extra = dict(entry.get('cfg', {}))
        if 'converted_from' in entry:
            source = timm.models.get_pretrained_cfg(entry['converted_from']).to_dict()
            extra.update({key: source[key] for key in SOURCE_CFG_KEYS if source.get(key) is not None})
            extra['notes'] = (
                f"converted from timm's {entry['converted_from']}; with the special coefficients "
                "the logits equal the source model's",
            )
        if 'hub' in entry['source']:
            extra['hf_hub_id'] = entry['source']['hub']
        else:
            extra['file'] = str(package_file(entry))
        for key in ('input_size', 'test_input_size', 'pool_size', 'mean', 'std', 'label_names', 'notes'):
            if isinstance(extra.get(key), list):
                extra[key] = tuple(extra[key])
        cfgs[tag] = base(**extra)
    return cfgs


def package_file(entry: dict) -> Path:
    return Path(str(resources.files(__package__).joinpath(entry['source']['package'])))


def verified_file(tag: str) -> Path:
    """The local file of ``tag``, downloaded if need be and checked against its size and sha256, or, where no hash
    is known yet, that it loads as safetensors (its hash is pinned by ``pin_file`` once a model has loaded it)."""
    return _verified(tag)[0]


def _verified(tag: str) -> tuple[Path, bool]:
    """``verified_file``'s file, and whether it is the hub cache's (the only kind of file that is ever pinned)."""
    if tag not in MANIFEST:
        raise WeightsError(f'no published weights named {tag!r}: `optnets weights list` shows them')
    path, cached = _local_file(tag, download=True)
    problem = _mismatch(tag, path)
    if problem is None and expected_sha256(tag) is None:
        try:
            load_file(path)
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error types for a bad file
            problem = f'the file {path} does not load as safetensors ({str(error).splitlines()[0]})'
    if problem is not None:
        if cached:  # never leave a corrupt file where the next load would find it
            _remove_cached(path)
        raise WeightsError(f'{tag}: {problem}{" (removed from the cache)" if cached else ""}')
    return path, cached


def _local_file(tag: str, download: bool) -> tuple[Path | None, bool]:
    """The file a load of ``tag`` uses (an ``OPTNETS_WEIGHTS_DIR`` override, the packaged file, or the hub's, which
    is downloaded if ``download``, else looked up in the cache; None if not there), and whether it is the cache's."""
    entry = MANIFEST[tag]
    local = Path(os.environ[WEIGHTS_DIR]) / f'{tag}.safetensors' if os.environ.get(WEIGHTS_DIR) else None
    if local is not None and local.is_file():
        return local, False
    if 'package' in entry['source']:
        return package_file(entry), False
    source = entry['source']
    found = try_to_load_from_cache(source['hub'], source['filename'], revision=source.get('revision'))
    if isinstance(found, str) or not download:
        return (Path(found) if isinstance(found, str) else None), True
    try:
        return Path(_download(source['hub'], source['filename'], source.get('revision'))), True
    except Exception as error:  # noqa: BLE001 - httpx and huggingface_hub raise many kinds for one cause
        raise WeightsError(
            f'{tag}: cannot fetch it from the Hugging Face hub ({str(error).splitlines()[0][:200]}); '
            f'offline, put the file at ${WEIGHTS_DIR}/{tag}.safetensors'
        ) from None


def _download(repo: str, filename: str, revision: str | None) -> str:
    """``hf_hub_download``, after one request without retries, so that an unreachable hub fails at once instead of
    after huggingface_hub's retries (minutes, a warning line each)."""
    if not constants.HF_HUB_OFFLINE:
        get_hf_file_metadata(hf_hub_url(repo, filename, revision=revision))
    return hf_hub_download(repo, filename, revision=revision)


def _mismatch(tag: str, path: Path) -> str | None:
    """What is wrong with ``path`` as the file of ``tag``: its size (checked first, without reading it), then its
    sha256, against the manifest's or the pinned ones; None when it matches or nothing is known yet."""
    pinned = _pins().get(tag, {})
    source = 'the manifest' if MANIFEST[tag].get('sha256') else f'its pin in {pins_file()}'
    expected_size = MANIFEST[tag].get('size') or pinned.get('size')
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        return f'the file {path} has {size} bytes, {source} expects {expected_size}'
    expected = expected_sha256(tag)
    actual = sha256(path) if expected is not None else None
    if expected is not None and actual != expected:
        return f'the file {path} has sha256 {actual}, {source} expects {expected}'
    return None


def verified_overlay(
    variant: str, pretrained_cfg: PretrainedCfg | dict, overlay: dict | None
) -> tuple[dict | None, Callable[[], None]]:
    """``pretrained_cfg_overlay`` with the verified file of the requested tag (a file the caller names wins), and
    what to call once the model has loaded it: it pins the file's hash where the manifest has none, so that a file
    that does not load (another architecture's) is never pinned. Only a download is pinned: a file from
    ``OPTNETS_WEIGHTS_DIR`` is the user's, and pinning it would refuse the genuine file later."""
    from timm.models import resolve_pretrained_cfg

    if overlay and overlay.get('file'):
        return overlay, lambda: None
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=pretrained_cfg)
    tag = f'{variant}.{cfg.tag}' if cfg is not None and cfg.tag else variant
    if tag not in MANIFEST or cfg.source is not None:  # a source of its own (local-dir:, hf-hub:): not the manifest's
        return overlay, lambda: None
    path, downloaded = _verified(tag)
    return {**(overlay or {}), 'file': str(path)}, (lambda: pin_file(tag, path)) if downloaded else (lambda: None)


def pin_file(tag: str, path: Path) -> None:
    """Pin ``path``'s hash and size for ``tag``, where the manifest has no hash and none is pinned yet."""
    if expected_sha256(tag) is None:
        _pin(tag, sha256(path), path.stat().st_size)


def status(tag: str) -> str:
    """Whether the file a load of ``tag`` would use is here and matches (without downloading)."""
    path, _ = _local_file(tag, download=False)
    if path is None or not path.is_file():
        return 'not downloaded' + ('' if expected_sha256(tag) else ' (no hash yet: pinned on first download)')
    if expected_sha256(tag) is None:
        return f'present at {path}, no hash to check against'
    problem = _mismatch(tag, path)
    return 'ok' if problem is None else f'MISMATCH: {problem}'


def expected_sha256(tag: str) -> str | None:
    """The manifest's hash of ``tag``, or the one pinned at its first download, or None."""
    return MANIFEST[tag].get('sha256') or _pins().get(tag, {}).get('sha256')


def _pins() -> dict:
    file = pins_file()
    if not file.is_file():
        return {}
    try:
        pins = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise WeightsError(f'{file} is not valid JSON ({error}): remove it, and hashes are pinned again') from None
    if not isinstance(pins, dict) or not all(_is_pin(v) for v in pins.values()):
        raise WeightsError(
            f'{file} is not a pins file ({{tag: {{"sha256": 64 hex digits, "size": bytes > 0}}}}): remove it, and '
            'hashes are pinned again'
        )
    return pins


def _is_pin(entry: object) -> bool:
    """A pin as ``_pin`` writes it: a sha256 of 64 hex digits and a positive whole size."""
    if not isinstance(entry, dict) or set(entry) != {'sha256', 'size'}:
        return False
    digest, size = entry['sha256'], entry['size']
    return (
        isinstance(digest, str)
        and len(digest) == 64
        and all(c in '0123456789abcdef' for c in digest)
        and type(size) is int
        and size > 0
    )


def _pin(tag: str, digest: str, size: int):
    pins = _pins()
    pins[tag] = {'sha256': digest, 'size': size}
    file = pins_file()
    file.parent.mkdir(parents=True, exist_ok=True)
    partial = file.with_name(file.name + '.partial')
    partial.write_text(json.dumps(pins, indent=1) + '\n')
    partial.replace(file)


def _remove_cached(path: Path):
    target = path.resolve()  # the hub cache links a snapshot path to a blob
    for p in {path, target}:
        p.unlink(missing_ok=True)
