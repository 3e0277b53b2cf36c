"""One settings object for every command.

Precedence, lowest first: built-in defaults, `<data dir>/config.toml`, `RAGBOT_*` environment
variables, then explicit overrides (command-line flags). The data dir itself comes from
`--data-dir`, else `RAGBOT_HOME`, else `$XDG_DATA_HOME/ragbot` (`~/.local/share/ragbot`).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ragbot.errors import ConfigError

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
DEFAULT_GENERATOR = "SmolLM2-135M-Instruct"

GENERATOR_BACKENDS = ("auto", "llama.cpp", "transformers")
EVIDENCE_RANKINGS = ("coverage", "coverage-questions", "embedding")  # evidence.py

# The shipped corpus sits next to the package in a source checkout.
DEFAULT_CORPUS = Path(__file__).resolve().parent.parent / "corpus"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    # Models: a built-in name, a local Hugging Face model dir, or a hub id (needs allow_downloads).
    embedder: str = DEFAULT_EMBEDDER
    generator: str = DEFAULT_GENERATOR
    # What runs the generator (generators/): "llama.cpp", "transformers", or "auto" (llama.cpp when
    # llama-cpp-python is installed and the generator is a GGUF file; measured faster, §3 of
    # docs/benchmarks.md). `ragbot tune` always trains with transformers.
    generator_backend: str = "auto"
    allow_downloads: bool = False
    # LoRA adapter on the generator: "active" (the registry's choice, see `ragbot model`),
    # "none" (the base model), or a version such as "v3".
    adapter: str = "active"
    # "auto" picks bfloat16 where the CPU computes it natively (AMX / AVX512-BF16), else float32.
    dtype: str = "auto"
    # Chunking, in embedder tokens.
    chunk_tokens: int = 200
    chunk_overlap: int = 40
    # Read PDFs with their structure (pdf.py): headings found from font sizes start sections,
    # running headers/footers and unreadable text are dropped. Off: pypdf's plain page text.
    # Measured on the shared PDFs before it became the default (docs/benchmarks.md §14).
    pdf_structure: bool = True
    # With the structure, also read tables drawn with rules from their cells (pdfplumber): a cell
    # that wraps stays whole, a column set flush right is a column. Off by default: on the frozen
    # PDF set it moved one table question out of first place and made ingest of the shared PDFs
    # about 26% slower, though the form questions of the development set gain (docs §14).
    pdf_ruled_tables: bool = False
    embed_batch_size: int = 64
    # Retrieval and answering.
    top_k: int = 5
    # How passages are found (lexical.py): "hybrid" fuses BM25 and the embedder's ranking,
    # "dense" uses the embedder only, "bm25" words only. Chosen by measurement (docs/benchmarks.md).
    retrieval: str = "hybrid"
    lexical_weight: float = 1.0  # BM25's weight in the hybrid fusion (dense: 1)
    # How hybrid search fuses the two rankings (lexical.py): "ranks" (reciprocal-rank fusion) or
    # "scores" (each ranking's scores scaled to [0, 1] and added, so a clear first counts; tried,
    # not adopted: docs/benchmarks.md §31).
    fusion: str = "ranks"
    # BM25 weighs each query term by its IDF over the questions asked before in this data dir
    # (the answer log, every user's, as `coverage-questions` does), so a word most questions
    # hold ("where") weighs little. Only while `question_log_weights` is on. Tried, not adopted
    # (docs/benchmarks.md §19).
    lexical_question_weights: bool = False
    # Past this many chunks the vector index becomes approximate (FAISS IVF, index.py), its
    # recall@10 against exact search measured when it is built; 0 keeps it exact. Exact search
    # takes about 13 ms a question at 100k chunks and 136 ms at 1M on 2 cores (docs/benchmarks.md §2).
    approximate_index_above: int = 200_000
    # A floor on the best passage's cosine: below it the bot declines before weighing evidence.
    # Off by default: on the frozen test set the evidence threshold alone refused the same
    # questions (docs/benchmarks.md §8), and this value could only be picked by hand.
    min_score: float = 0.0
    # How an answer is made from the evidence (evidence.py): "extract" quotes the best passage
    # sentences with their citations; "generate" has the generator write it from the best
    # `prompt_passages` passages. Extract scores higher (docs/benchmarks.md §8) and is instant.
    answer_mode: str = "extract"
    answer_sentences: int = 1  # sentences quoted by the extract mode
    # How the passages' sentences are ranked to choose the evidence (evidence.py):
    # "coverage-questions" (how well a sentence covers the question token by token, the weighted
    # mean, a token weighing less the more earlier questions in this data dir hold it, so "what"
    # stops outweighing the subject; docs/benchmarks.md §18), "coverage" (the question's
    # least-covered quarter, §13) or "embedding" (the sentences' cosine). Whether to answer at
    # all is decided by the cosine and `evidence_threshold` either way.
    evidence_ranking: str = "coverage-questions"
    # "coverage-questions" (and BM25, with `lexical_question_weights`) weighs a token down by how
    # many earlier questions (the answer log) hold it. False: by the chunks alone, as on a first
    # day, so answers do not move as more questions are asked (for a reproducible evaluation over
    # a growing log).
    # The same questions also tell a follow-up from a question on another subject (below).
    question_log_weights: bool = True
    # A second turn searched together with the question before must bring that search closer
    # to the passage it finds first than this share of the user's other questions would, put
    # after the same question; else it is searched alone (a question on another subject, no
    # longer answered about the previous one). The median, chosen on the development turns;
    # 0 joins every turn as before (RagBot._comparison_questions, docs/benchmarks.md §33).
    follow_up_rank: float = 0.5
    # Below this best-evidence score the passages are taken not to hold the answer. `ragbot tune`
    # fits its own on the user's documents; this default was fit by the same code on the
    # shipped corpus (scripts/calibrate_evidence.py, docs/calibration.md).
    evidence_threshold: float = 0.48
    # Answer a question the user corrected before with the correction (corrections.py). Two
    # questions ask the same when their embeddings' cosine reaches `correction_match`; `ragbot
    # tune` fits its own, this default was fit by the same code on the shipped corpus.
    use_corrections: bool = True
    correction_match: float = 0.79
    # The generate mode shows the generator at most this many evidence sentences.
    prompt_passages: int = 3
    context_tokens: int = 2048  # prompt + answer budget for the generator
    max_new_tokens: int = 128
    # Questions the llama.cpp backend decodes together, each with its own KV cache of
    # `context_tokens` (memory grows with it); the chat serves this many answers at once.
    parallel_answers: int = 4
    temperature: float = 0.0
    max_upload_mb: int = 50  # largest file the chat page accepts
    default_corpus: Path | None = field(default=DEFAULT_CORPUS)

    @property
    def uses_bm25(self) -> bool:
        """Whether anything reads the BM25 index: the search, or the coverage ranking's IDF."""
        return self.retrieval != "dense" or self.evidence_ranking.startswith("coverage")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ragbot.db"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def adapters_dir(self) -> Path:
        return self.data_dir / "adapters"

    @property
    def embedders_dir(self) -> Path:
        """Embedders tuned to rank passages (`ragbot tune --retriever`)."""
        return self.data_dir / "embedders"

    @property
    def tune_dir(self) -> Path:
        return self.data_dir / "tune"

    def validate(self) -> None:
        if self.chunk_tokens < 16:
            raise ConfigError(f"chunk_tokens must be at least 16 (got {self.chunk_tokens})")
        if not 0 <= self.chunk_overlap < self.chunk_tokens // 2 + 1:
            raise ConfigError(
                f"chunk_overlap must be between 0 and half of chunk_tokens "
                f"(got {self.chunk_overlap} with chunk_tokens {self.chunk_tokens})"
            )
        if self.top_k < 1:
            raise ConfigError(f"top_k must be at least 1 (got {self.top_k})")
        if self.prompt_passages < 1:
            raise ConfigError(f"prompt_passages must be at least 1 (got {self.prompt_passages})")
        if self.retrieval not in ("hybrid", "dense", "bm25"):
            raise ConfigError(f"retrieval must be hybrid, dense or bm25 (got {self.retrieval!r})")
        if self.approximate_index_above < 0:
            raise ConfigError(f"approximate_index_above must be 0 (never) or more (got {self.approximate_index_above})")
        if self.fusion not in ("ranks", "scores"):
            raise ConfigError(f"fusion must be ranks or scores (got {self.fusion!r})")
        if not 0 <= self.follow_up_rank <= 1:
            raise ConfigError(f"follow_up_rank must be between 0 and 1 (got {self.follow_up_rank})")
        if self.lexical_weight < 0:
            raise ConfigError(f"lexical_weight must be 0 or more (got {self.lexical_weight})")
        if self.answer_mode not in ("extract", "generate"):
            raise ConfigError(f"answer_mode must be extract or generate (got {self.answer_mode!r})")
        if self.evidence_ranking not in EVIDENCE_RANKINGS:
            raise ConfigError(f"evidence_ranking must be one of {', '.join(EVIDENCE_RANKINGS)} "
                              f"(got {self.evidence_ranking!r})")
        if self.answer_sentences < 1:
            raise ConfigError(f"answer_sentences must be at least 1 (got {self.answer_sentences})")
        if not -1 <= self.correction_match <= 1:
            raise ConfigError(f"correction_match is a cosine, in [-1, 1] (got {self.correction_match})")
        if self.generator_backend not in GENERATOR_BACKENDS:
            raise ConfigError(f"generator_backend must be one of {', '.join(GENERATOR_BACKENDS)} "
                              f"(got {self.generator_backend!r})")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"dtype must be auto, float32 or bfloat16 (got {self.dtype!r})")
        if self.max_new_tokens < 1 or self.context_tokens <= self.max_new_tokens:
            raise ConfigError("context_tokens must be larger than max_new_tokens, both positive")
        if not 1 <= self.parallel_answers <= 64:
            raise ConfigError(f"parallel_answers must be between 1 and 64 (got {self.parallel_answers})")
        if self.max_upload_mb < 1:
            raise ConfigError(f"max_upload_mb must be at least 1 (got {self.max_upload_mb})")
        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError(f"temperature must be between 0 and 2 (got {self.temperature})")


def default_data_dir() -> Path:
    if os.environ.get("RAGBOT_HOME"):
        return Path(os.environ["RAGBOT_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ragbot"


def _coerce(name: str, raw: Any, kind: type) -> Any:
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is Path:
            return Path(str(raw)).expanduser()
        return kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name}: cannot read {raw!r} as {kind.__name__}") from None


_KINDS: dict[str, type] = {
    "embedder": str, "generator": str, "generator_backend": str, "allow_downloads": bool, "adapter": str, "dtype": str,
    "chunk_tokens": int, "chunk_overlap": int, "pdf_structure": bool, "pdf_ruled_tables": bool,
    "embed_batch_size": int, "top_k": int,
    "retrieval": str, "lexical_weight": float, "fusion": str, "approximate_index_above": int,
    "min_score": float, "answer_mode": str, "answer_sentences": int, "evidence_threshold": float,
    "evidence_ranking": str,
    "question_log_weights": bool, "lexical_question_weights": bool, "follow_up_rank": float,
    "use_corrections": bool, "correction_match": float,
    "prompt_passages": int, "context_tokens": int, "max_new_tokens": int, "parallel_answers": int,
    "temperature": float,
    "max_upload_mb": int, "default_corpus": Path,
}


def load_settings(data_dir: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings for `data_dir` (see the module docstring for precedence)."""
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    values: dict[str, Any] = {}

    config_file = root / "config.toml"
    try:
        config = config_file.read_text(encoding="utf-8") if config_file.is_file() else None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{config_file}: not valid TOML ({exc})") from None
    except OSError as exc:  # e.g. a data dir whose parent folder this user may not enter
        raise ConfigError(f"cannot use {root} as the data dir: {exc.strerror or exc}") from None
    if config is not None:
        try:
            from_file = tomllib.loads(config)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file}: not valid TOML ({exc})") from None
        for key, raw in from_file.items():
            if key not in _KINDS:
                raise ConfigError(f"{config_file}: unknown setting {key!r}")
            values[key] = _coerce(key, raw, _KINDS[key])

    for key, kind in _KINDS.items():
        env = os.environ.get(f"RAGBOT_{key.upper()}")
        if env is not None:
            values[key] = _coerce(f"RAGBOT_{key.upper()}", env, kind)

    for key, raw in overrides.items():
        if raw is None:
            continue
        if key not in _KINDS:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _coerce(key, raw, _KINDS[key])

    settings = Settings(data_dir=root, **values)
    settings.validate()
    return settings


def with_overrides(settings: Settings, **overrides: Any) -> Settings:
    """A copy of `settings` with some fields replaced and checked again."""
    known = {f.name for f in fields(Settings)}
    unknown = set(overrides) - known
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    updated = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    updated.validate()
    return updated
