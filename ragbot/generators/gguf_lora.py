"""A tuned adapter (PEFT LoRA, safetensors) written as a GGUF LoRA file, which llama.cpp applies
to the GGUF base model at load time: `ragbot tune` trains in PyTorch, the llama.cpp backend
serves the result.

Why not llama.cpp's own converter: `convert_lora_to_gguf.py` is a script in llama.cpp's source
tree, installed by no package, and it wants the base model as a Hugging Face dir. The conversion
of a LoRA is small, and the `gguf` package (which transformers already needs to read GGUF files)
has the writer and the map from Hugging Face tensor names to GGUF names. What it takes:
- each `lora_A`/`lora_B` pair is stored as `<gguf tensor>.lora_a` / `.lora_b`, unchanged;
- llama.cpp's llama architecture stores the query and key projections with their rows reordered
  for its rotary embedding (the base GGUF was converted so); B's rows are reordered the same way,
  since (P W) + s (P B) A = P (W + s B A);
- the scale: llama.cpp multiplies by alpha / r, as PEFT does (rsLoRA's alpha / sqrt(r) is
  written as an equivalent alpha).
Shapes are checked against the base GGUF's tensors, so an adapter for another model fails here
with a message instead of in llama.cpp.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ragbot.errors import ModelError
from ragbot.storage.files import atomic_path

ADAPTER_GGUF = "adapter.gguf"  # the exported file's name inside an adapter's folder
# Architectures whose converted GGUF reorders the rows of Q and K (llama.cpp's
# convert_hf_to_gguf.py, LlamaModel.permute), and ones known to keep Hugging Face's layout
# (Qwen2Model / Qwen3Model there). Others are refused rather than guessed.
_PERMUTED_QK = {"llama"}
_SUPPORTED = _PERMUTED_QK | {"qwen2", "qwen3"}


def _field(reader, key: str):
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def _llama_permute(rows, n_head: int):
    """llama.cpp's row order for a rotary projection with `n_head` heads (numpy, rows first)."""
    return rows.reshape(n_head, 2, rows.shape[0] // n_head // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def can_serve(adapter_dir: Path, base_gguf: Path) -> bool:
    """Whether llama.cpp can apply this adapter: it was exported, or can be (a known architecture)."""
    import gguf

    if (Path(adapter_dir) / ADAPTER_GGUF).is_file():
        return True
    try:
        return str(_field(gguf.GGUFReader(str(base_gguf)), "general.architecture")) in _SUPPORTED
    except (OSError, ValueError):
        return False


def export_lora(adapter_dir: Path, base_gguf: Path, target: Path) -> Path:
    """Write the PEFT adapter in `adapter_dir` as a GGUF LoRA for `base_gguf` at `target`
    (atomically: a crash leaves no half file under that name)."""
    import gguf
    import numpy as np
    from safetensors.torch import load_file

    adapter_dir, target = Path(adapter_dir), Path(target)
    try:
        config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
        weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the adapter in {adapter_dir}: {exc}") from None
    if config.get("use_dora"):
        raise ModelError(f"adapter {adapter_dir} is a DoRA adapter; llama.cpp runs plain LoRA only")
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    if config.get("use_rslora"):
        alpha = alpha * math.sqrt(rank)  # llama.cpp scales by alpha / r

    reader = gguf.GGUFReader(str(base_gguf))
    arch = str(_field(reader, "general.architecture"))
    if arch not in _SUPPORTED:
        raise ModelError(f"exporting adapters for the {arch!r} architecture to llama.cpp is not supported; "
                         f"use generator_backend = \"transformers\"")
    n_head = int(_field(reader, f"{arch}.attention.head_count"))
    n_head_kv = int(_field(reader, f"{arch}.attention.head_count_kv") or n_head)
    n_blocks = int(_field(reader, f"{arch}.block_count"))
    base_shapes = {t.name: tuple(int(n) for n in reversed(t.shape)) for t in reader.tensors}  # (out, in)
    names = gguf.TensorNameMap(gguf.MODEL_ARCH[arch.upper()], n_blocks)

    pairs: dict[str, dict[str, object]] = {}
    for key, tensor in weights.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}.weight"
            if key.endswith(marker):
                module = key[: -len(marker)].removeprefix("base_model.model.")
                pairs.setdefault(module, {})[part] = tensor.float().numpy()
                break
        else:
            raise ModelError(f"adapter {adapter_dir}: tensor {key!r} is not a LoRA A or B matrix; "
                             f"llama.cpp cannot apply it")

    with atomic_path(target) as tmp:
        writer = gguf.GGUFWriter(str(tmp), arch)
        try:
            writer.add_type(gguf.GGUFType.ADAPTER)
            writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
            writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
            for module, pair in sorted(pairs.items()):
                if set(pair) != {"lora_A", "lora_B"}:
                    raise ModelError(f"adapter {adapter_dir}: {module} has only {', '.join(pair)}")
                name = names.get_name(module + ".weight", try_suffixes=(".weight",))
                if name is None or name not in base_shapes:
                    raise ModelError(f"adapter {adapter_dir}: {module} has no counterpart in {base_gguf.name}")
                lora_a, lora_b = pair["lora_A"], pair["lora_B"]
                if (lora_b.shape[0], lora_a.shape[1]) != base_shapes[name]:
                    raise ModelError(f"adapter {adapter_dir}: {module} is {lora_b.shape[0]}x{lora_a.shape[1]}, "
                                     f"{base_gguf.name} has {name} {base_shapes[name][0]}x{base_shapes[name][1]}")
                if arch in _PERMUTED_QK and name.endswith("attn_q.weight"):
                    lora_b = _llama_permute(lora_b, n_head)
                elif arch in _PERMUTED_QK and name.endswith("attn_k.weight"):
                    lora_b = _llama_permute(lora_b, n_head_kv)
                writer.add_tensor(name + ".lora_a", np.ascontiguousarray(lora_a, dtype=np.float32))
                writer.add_tensor(name + ".lora_b", np.ascontiguousarray(lora_b, dtype=np.float32))
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
    return target
