"""Versioned models made by `ragbot tune`: LoRA adapters for the generator, kept in
`<data dir>/adapters/`, and embedders tuned to rank passages, kept in `<data dir>/embedders/`.

    adapters/
      v1/  adapter_model.safetensors, adapter_config.json, tokenizer files, ragbot-adapter.json
      v2/  ...
      state.json   {"active": "v2", "history": ["v1", "v2"]}

`ragbot-adapter.json` holds the metadata: base model, data hash and counts, training config,
gate metrics, parent adapter, creation time. A version dir appears by rename, and state.json is
replaced atomically (files.py), so an interrupted save never leaves a half-written adapter
active; every change holds the registry's inter-process lock, so two processes never make two
adapters with one number.

Which embedder ranks is not kept here but in the database (store.py, `ranking_embedder`), since
it changes together with the index generation and the chunk vectors it searches; its registry
only keeps the saved versions (`VersionRegistry`).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ragbot.errors import RagbotError
from ragbot.storage.files import building_dir, full_disk_reported, state_lock, write_atomic

METADATA = "ragbot-adapter.json"
EMBEDDER_METADATA = "ragbot-embedder.json"
STATE = "state.json"
_VERSION = re.compile(r"^v(\d+)$")
NO_ADAPTER = "none"


class RegistryError(RagbotError):
    pass


class AdapterError(RegistryError):
    pass


@dataclass
class VersionInfo:
    version: str
    path: Path
    metadata: dict

    @property
    def base_model(self) -> str:
        return self.metadata.get("base_model", "")


class VersionRegistry:
    """Saved versions v1, v2, ... in `root`, each a folder with a metadata file; never changed
    once saved except for their metadata."""

    noun = "model"
    metadata_file = METADATA
    error: type[RegistryError] = RegistryError

    def __init__(self, root: Path):
        self.root = Path(root)

    # -- reading ----------------------------------------------------------------------------

    def versions(self) -> list[VersionInfo]:
        """Saved versions, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            match = _VERSION.match(entry.name)
            if match and (entry / self.metadata_file).is_file():
                found.append((int(match.group(1)), entry))
        return [self._info(path) for _, path in sorted(found)]

    def get(self, version: str) -> VersionInfo:
        path = self.root / version
        if not _VERSION.match(version) or not (path / self.metadata_file).is_file():
            known = ", ".join(v.version for v in self.versions()) or "none saved yet"
            raise self.error(f"no {self.noun} {version!r} in {self.root} (known: {known})")
        return self._info(path)

    def _info(self, path: Path) -> VersionInfo:
        try:
            metadata = json.loads((path / self.metadata_file).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise self.error(f"{path / self.metadata_file}: unreadable ({exc})") from None
        return VersionInfo(version=path.name, path=path, metadata=metadata)

    # -- writing ----------------------------------------------------------------------------

    def _changing(self):
        """The lock every change of the registry holds, so two processes never number two
        versions alike or interleave changes of state.json."""
        return state_lock(self.root / ".lock", f"the {self.noun} registry in {self.root}")

    def save(self, trained_dir: Path, metadata: dict) -> VersionInfo:
        """Copy a trained model's folder in as the next version (not activated); its
        subfolders too (a sentence-transformers model keeps its pooling in one)."""
        with self._changing():
            existing = [int(_VERSION.match(p.name).group(1)) for p in self.root.iterdir() if _VERSION.match(p.name)]
            version = f"v{max(existing, default=0) + 1}"
            with full_disk_reported(self.root / version):
                with building_dir(self.root / version, f".{version}-") as tmp:
                    for item in Path(trained_dir).iterdir():
                        if item.is_file():
                            shutil.copy2(item, tmp / item.name)
                        elif item.is_dir():
                            shutil.copytree(item, tmp / item.name)
                    record = {"version": version, "created_at": time.time(), **metadata}
                    (tmp / self.metadata_file).write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
        return self.get(version)

    def update_metadata(self, version: str, **fields) -> VersionInfo:
        with self._changing():
            info = self.get(version)
            info.metadata.update(fields)
            write_atomic(info.path / self.metadata_file, json.dumps(info.metadata, indent=2, default=str))
        return info


class AdapterRegistry(VersionRegistry):
    """The generator's LoRA adapters, and which one is active (state.json)."""

    noun = "adapter"
    error = AdapterError

    def state(self) -> dict:
        path = self.root / STATE
        if not path.is_file():
            return {"active": None, "history": []}
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise AdapterError(f"{path}: unreadable ({exc}); fix it or run `ragbot model activate VERSION`") from None
        state.setdefault("active", None)
        state.setdefault("history", [])
        return state

    def active(self) -> VersionInfo | None:
        version = self.state()["active"]
        return self.get(version) if version else None

    def resolve(self, choice: str) -> VersionInfo | None:
        """The adapter a setting names: "active", "none", or a version."""
        if choice == NO_ADAPTER:
            return None
        if choice == "active":
            return self.active()
        return self.get(choice)

    def activate(self, version: str) -> VersionInfo | None:
        """Make `version` (or "none", the base model) what "active" means."""
        with self._changing():
            info = None if version == NO_ADAPTER else self.get(version)
            state = self.state()
            if state["active"] != (info.version if info else None):
                state["history"].append(state["active"])
            state["active"] = info.version if info else None
            write_atomic(self.root / STATE, json.dumps(state, indent=2))
        return info

    def rollback(self) -> VersionInfo | None:
        """Re-activate what was active before the current one (None: the base model)."""
        with self._changing():
            state = self.state()
            if not state["history"]:
                raise AdapterError("nothing to roll back to: no earlier activation is recorded")
            previous = state["history"].pop()
            state["active"] = previous
            write_atomic(self.root / STATE, json.dumps(state, indent=2))
        return self.get(previous) if previous else None


class EmbedderRegistry(VersionRegistry):
    """Embedders tuned to rank passages (learn/retriever.py). Which one ranks is the database's
    `ranking_embedder` (store.py), not state kept here."""

    noun = "embedder"
    metadata_file = EMBEDDER_METADATA
