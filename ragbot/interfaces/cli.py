"""The `ragbot` command: translates arguments into RagBot calls and results into text.

Domain errors (RagbotError) become one-line messages and exit status 2 here, nowhere else.
Exit status: 0 success, 1 some input files failed, 2 an error stopped the command, 130 interrupted,
141 the reader of the output went away (`| head`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
import time
import uuid
from pathlib import Path

from ragbot.errors import RagbotError
from ragbot.settings import GENERATOR_BACKENDS

EPILOG = """\
The data dir holds the database, the vector index and converted models. It is --data-dir,
else $RAGBOT_HOME, else ~/.local/share/ragbot. Settings can also go in <data dir>/config.toml
or RAGBOT_<NAME> environment variables (e.g. RAGBOT_TOP_K=8).
"""


def _ranged(parse, allowed, rule: str):
    """An argparse type: `parse` (int or float) of the text, refused unless `allowed(value)`;
    the error says `rule` and what was given, and argparse names the flag before it."""
    def typed(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {'whole number' if parse is int else 'number'}: {text!r}") from None
        if not allowed(value):  # NaN fails every comparison, so it is refused too
            raise argparse.ArgumentTypeError(f"{rule} (got {text})")
        return value
    return typed


# Whole numbers of at least 1 (passages, steps, questions, tokens), 0 or more, and TCP ports
# (`chat --port 99999` ended in a traceback).
_count = _ranged(int, lambda v: v >= 1, "must be at least 1")
_whole = _ranged(int, lambda v: v >= 0, "must be 0 or more")
_port = _ranged(int, lambda v: 1 <= v <= 65535, "must be between 1 and 65535")
# Minutes and epochs; a temperature as the setting allows it (`ask --temperature -1` was passed on).
_positive = _ranged(float, lambda v: 0 < v < math.inf, "must be above 0 and finite")
_temperature = _ranged(float, lambda v: 0 <= v <= 2, "must be between 0 and 2")


def _share(below: float):
    """An argparse type: a share from 0 up to, not including, `below`."""
    return _ranged(float, lambda v: 0 <= v < below, f"must be at least 0 and below {below:g}")


def _common(default) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name."""
    parser = argparse.ArgumentParser(add_help=False)
    # Listed after a command's own options, under a title of their own.
    common = parser.add_argument_group("settings every command takes (before or after its name)")
    common.add_argument("--data-dir", metavar="DIR", default=default,
                        help="where ragbot keeps its index and database")
    common.add_argument("--embedder", default=default, help="embedder: built-in name, local model dir or hub id")
    common.add_argument("--generator", default=default,
                        help="generator: built-in name, a .gguf file, an Ollama model (ollama:NAME, or a name "
                             "your Ollama store holds), a local Hugging Face model dir, or a hub id")
    common.add_argument("--backend", dest="generator_backend", choices=GENERATOR_BACKENDS, default=default,
                        help="what runs the generator: llama.cpp (fast on a CPU, needs a GGUF generator), "
                             "transformers (any model; what tune trains with), or auto (default: llama.cpp "
                             "when it is installed, the generator is a GGUF file and the adapter runs there)")
    common.add_argument("--adapter", default=default, metavar="VERSION",
                        help="generator adapter: active (default), none, or a version such as v2")
    common.add_argument("--answer-mode", choices=("extract", "generate"), default=default,
                        help="extract: quote the passage sentences that answer, with citations (default); "
                             "generate: the generator writes the answer from the passages")
    common.add_argument("--allow-downloads", action="store_true", default=default,
                        help="allow fetching models from the Hugging Face hub (off by default)")
    return parser


def build_parser() -> argparse.ArgumentParser:
    # Subcommands must not reset an option given before the command name, hence SUPPRESS there.
    common = _common(argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="ragbot",
        description="A local chatbot that answers from your own documents, citing them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common(None)],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("ingest", parents=[common], help="add or update documents (PDF, Word .docx, Markdown, text, HTML)",
                       description="Read files and folders (recursively), chunk and embed them. Unchanged "
                                   "files are skipped; changed files replace their old chunks. A file with the same "
                                   "bytes as a document stored from another path is stored once (the first copy).")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.add_argument("--prune", action="store_true", help="also drop stored documents whose files are gone")
    p.add_argument("--chunk-tokens", type=int, help="chunk size in embedder tokens (default 200)")
    p.add_argument("--chunk-overlap", type=int, help="overlap between chunks in tokens (default 40)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("remove", parents=[common], help="remove documents (a file, or every file under a folder)",
                       description="Remove the stored documents at or under PATH (the files are not touched, so "
                                   "ingesting a folder that holds one stores it again). A "
                                   "removed document's copy elsewhere (the same bytes, stored once) is read and "
                                   "stored in its place, so what it holds is still searched.")
    p.add_argument("paths", nargs="+", metavar="PATH")

    p = sub.add_parser("search", parents=[common], help="show the passages that best match a query",
                       description="Show the stored passages that best match QUERY, with their scores and sources.")
    p.add_argument("query", help="what to look for, in your own words")
    p.add_argument("-k", type=_count, help="number of passages (default 5, or the top_k setting: RAGBOT_TOP_K)")
    p.add_argument("--in", dest="within", action="append", metavar="PATH",
                   help="search only the stored documents at PATH (a file or a folder; repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("ask", parents=[common], help="answer a question from the documents, with citations",
                       description="Answer QUESTION from the documents. Without QUESTION, ask interactively.")
    p.add_argument("question", nargs="?",
                   help="what to ask; leave it out to chat in the terminal (a follow-up is read with the turn before)")
    p.add_argument("-k", type=_count, help="passages to retrieve (default 5, or the top_k setting: RAGBOT_TOP_K)")
    p.add_argument("--temperature", type=_temperature, help="0 for greedy decoding (default), up to 2")
    p.add_argument("--in", dest="within", action="append", metavar="PATH",
                   help="answer only from the stored documents at PATH (a file or a folder; repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-default-corpus", action="store_true",
                   help="do not ingest the shipped corpus into a new data dir (one that never held a document)")

    p = sub.add_parser("chat", parents=[common], help="open the chat UI in the browser (Gradio)",
                       description="Serve the chat UI. It listens on 127.0.0.1 only, unless --host says otherwise; "
                                   "no public share link unless --share. The shipped corpus is ingested into a "
                                   "data dir that never held a document.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=7860, help="port (default 7860)")
    p.add_argument("--auth", metavar="USER:PASSWORD",
                   help="require a login (or set RAGBOT_AUTH=user:password)")
    p.add_argument("--share", action="store_true",
                   help="also create a public Gradio share link (off by default; needs --auth)")
    p.add_argument("--max-upload-mb", type=int, help="largest file accepted by upload (default 50)")
    p.add_argument("--parallel-answers", type=int, metavar="N",
                   help="answers the llama.cpp backend writes together (default 4); each holds a KV cache of "
                        "context_tokens, so memory grows with N")
    p.add_argument("--no-default-corpus", action="store_true",
                   help="do not ingest the shipped corpus into a new data dir (one that never held a document)")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)

    p = sub.add_parser("eval", parents=[common], help="measure retrieval or answer quality",
                       description="Measure retrieval (BEIR data sets) or answers (a QA file).")
    evals = p.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    e = evals.add_parser("retrieval", parents=[common],
                         help="nDCG@10, Recall@k and MRR@10 on a BEIR folder or on your liked answers",
                         description="With --beir: index a BEIR corpus with ragbot's own ingest (into "
                                     "<data dir>/beir/NAME, reused while unchanged) and score retrieval on the "
                                     "judged queries. With --feedback: score retrieval on the data dir itself, "
                                     "each question whose answer got a thumbs-up (and no correction) judged by "
                                     "the chunks that answer cited, as `tune --retriever`'s gate judges: nDCG@10 "
                                     "counts a cited chunk 2 and another chunk of its document 1, recall and MRR "
                                     "count the cited chunks. Those chunks were found by the search of the "
                                     "day, so the scores favour it; they tell how often search still puts what you "
                                     "liked first, and compare modes on your own questions.")
    source = e.add_mutually_exclusive_group(required=True)
    source.add_argument("--beir", metavar="DIR",
                        help="folder with corpus.jsonl (or corpus.part*.jsonl), queries.jsonl, qrels/SPLIT.tsv")
    source.add_argument("--feedback", action="store_true", help="judge by your liked answers' cited passages")
    e.add_argument("--split", default="test", help="qrels split (default test)")
    e.add_argument("-k", type=_count, default=10, help="cut-off for recall (default 10)")
    e.add_argument("--modes", default="dense,bm25,hybrid", metavar="LIST",
                   help="retrieval modes to compare, side by side, with per-query wins/losses against the first "
                        "(default dense,bm25,hybrid; the detailed files are written for the `retrieval` setting's). "
                        "MODE@shipped ranks with the shipped embedder while a tuned one ranks; with --feedback, "
                        "the setting's mode@shipped is added then")
    e.add_argument("--out", metavar="DIR", help="where to write summary.json, per_query.jsonl and worst.md")
    e.add_argument("--report", metavar="DIR", help="also write a markdown report with plots")
    e.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    e = evals.add_parser("answers", parents=[common], help="ROUGE-L, token F1, refusals, citations on a QA file",
                         description="Ask every question of a JSONL file (question, answers, optional answerable, "
                                     "gold_passage_ids, passages) and score the answers.")
    e.add_argument("--qa", required=True, metavar="FILE", help="JSONL questions, e.g. tests/data/corpus_qa.jsonl")
    e.add_argument("--out", metavar="DIR", help="where to write summary.json and per_question.jsonl")
    e.add_argument("--report", metavar="DIR", help="also write a markdown report with plots")
    e.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    e = evals.add_parser("report", help="markdown report with plots for a run, or two runs side by side",
                         description="Write report.md and PNG plots for an evaluation run folder; with "
                                     "--baseline, compare the two runs side by side.")
    e.add_argument("run", metavar="RUN_DIR", help="a folder written by `ragbot eval ...`")
    e.add_argument("--baseline", metavar="RUN_DIR", help="an earlier run to compare with")
    e.add_argument("--out", metavar="DIR", required=True, help="where to write the report")

    p = sub.add_parser("feedback", parents=[common], help="votes on answers: record, inspect, count, export for tuning",
                       description="Every answer is logged with its trace. Vote on it by its id, see its "
                                   "trace, count votes, or export training data in TRL's dataset shapes.")
    fb = p.add_subparsers(dest="feedback_command", metavar="WHAT", required=True)
    f = fb.add_parser("vote", parents=[common], help="thumbs up/down (or none) on an answer, by its id")
    f.add_argument("answer_id", help="the id `ragbot ask` prints")
    f.add_argument("vote", choices=["up", "down", "none"])
    f.add_argument("--comment", help="why (a comment saved before is kept unless this is given; \"\" removes it)")
    f.add_argument("--correction", help="what the answer should have been: from now on it answers this question "
                                        "and questions that ask the same (the refusal sentence makes ragbot refuse); "
                                        "one saved before is kept unless this is given, and \"\" withdraws it")
    f.add_argument("--user", help="who votes (recorded in the history)")
    f = fb.add_parser("show", parents=[common], help="an answer's full trace, feedback and history")
    f.add_argument("answer_id", help="the id `ragbot ask` prints")
    f = fb.add_parser("stats", parents=[common], help="answers, votes and thumbs-up rate per model/adapter")
    f.add_argument("--json", action="store_true", help="print JSON")
    f = fb.add_parser("export", parents=[common], help="write training data as JSONL",
                      description="sft: {prompt, completion} from thumbs-up answers and corrections; "
                                  "kto: {prompt, completion, label} from every vote; dpo: {prompt, chosen, "
                                  "rejected} from corrections and up/down pairs on the same prompt.")
    f.add_argument("--format", required=True, choices=["sft", "kto", "dpo"])
    f.add_argument("--out", required=True, metavar="FILE.jsonl")

    p = sub.add_parser("tune", parents=[common], help="fine-tune the generator (LoRA) on your documents and feedback",
                       description="Make grounded QA examples from the indexed documents (and the feedback log), "
                                   "fit a check of whether the passages hold the answer (a refusal otherwise), "
                                   "train a LoRA adapter with SFT then KTO (DPO when the feedback has pairs), "
                                   "save it as the next version, and activate it only if it answers held-out "
                                   "questions better than the active model. An interrupted run resumes.",
                       epilog="--quick: 30 model-written questions, at most 24 SFT and 4 KTO/DPO steps, 60 gate "
                              "questions (5-15 minutes on a 2-core CPU for the shipped corpus). It is bounded by "
                              "steps, not minutes, so a busy machine makes the same adapter, later; the progress "
                              "bars show the time left.")
    p.add_argument("--retriever", action="store_true",
                   help="tune the embedder that ranks passages instead, on questions whose answers got a thumbs-up "
                        "or a correction citing a passage [n] (needs 40+ of them); it only orders passages, scores stay the shipped embedder's. "
                        "Applies with --max-steps, --heldout, --activate and --seed")
    p.add_argument("--quick", action="store_true", help="small settings for a first try (see below)")
    p.add_argument("--max-steps", type=_count, help="stop each training stage after this many steps")
    p.add_argument("--time-budget", type=_positive, metavar="MINUTES", help="stop training after this many minutes")
    p.add_argument("--model-questions", type=_whole, metavar="N",
                   help="questions the local model writes (default 120; 0: from document structure only)")
    p.add_argument("--preference", choices=["auto", "kto", "dpo", "none"],
                   help="second stage (default auto: DPO when the feedback holds 8+ pairs, else KTO)")
    p.add_argument("--epochs", type=_positive, help="SFT epochs (default 2)")
    p.add_argument("--heldout", type=_share(1), metavar="FRACTION",
                   help="share of chunks held out (default 0.2); with --retriever, of liked questions")
    p.add_argument("--gate-questions", type=_count, metavar="N", help="held-out questions the gate asks (default 60; unanswerable ones kept up to half); "
                        "it activates the adapter only when the 95%% interval of the gain is above zero")
    p.add_argument("--gate-max-new-tokens", type=_count, metavar="N",
                   help="answer length limit while the gate compares models (default 96)")
    p.add_argument("--save-steps", type=_count, metavar="N", help="save a checkpoint every N steps (default 10)")
    p.add_argument("--activate", choices=["gate", "always", "never"],
                   help="activate the new adapter when the gate passes (default), always, or never")
    p.add_argument("--no-answerability-check", action="store_true",
                   help="do not fit the evidence threshold below which ragbot refuses; the default "
                        "evidence_threshold setting then applies")
    p.add_argument("--false-refusal", type=_share(0.5), metavar="SHARE",
                   help="the share of answerable training questions the fitted threshold may refuse (default 0.05)")
    p.add_argument("--fresh", action="store_true", help="train from the base model, not on top of the active adapter")
    p.add_argument("--new", action="store_true", help="start a new run instead of resuming an unfinished one")
    p.add_argument("--seed", type=int, help="random seed for the data split and training (default 0)")
    p.add_argument("--no-default-corpus", action="store_true",
                   help="do not ingest the shipped corpus into a new data dir (one that never held a document)")

    p = sub.add_parser("model", parents=[common], help="list, activate or roll back generator adapters (or tuned embedders)",
                       description="Adapters made by `ragbot tune` are versions v1, v2, ... in <data dir>/adapters. "
                                   "The active one is used by ask, chat and eval (override with --adapter). "
                                   "With --retriever, the same for the embedders `ragbot tune --retriever` made "
                                   "(<data dir>/embedders): the active one ranks passages for every search.")
    mc = p.add_subparsers(dest="model_command", metavar="WHAT", required=True)
    which = argparse.ArgumentParser(add_help=False)
    which.add_argument("--retriever", action="store_true",
                       help="the embedders that rank passages (made by `ragbot tune --retriever`), not adapters")
    m = mc.add_parser("list", parents=[common, which], help="adapters with their metrics; * marks the active one")
    m.add_argument("--json", action="store_true", help="print JSON")
    m = mc.add_parser("activate", parents=[common, which],
                      help="make VERSION (or none: the base model, or the shipped embedder) active; an embedder "
                           "first embeds every chunk it has no vector of")
    m.add_argument("version", metavar="VERSION")
    mc.add_parser("rollback", parents=[common, which], help="re-activate what was active before")

    p = sub.add_parser("status", parents=[common], help="what the data dir holds",
                   description="Count the stored documents and chunks, and name the models, adapter, ranking embedder, retrieval mode and search indexes in use.")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("documents", parents=[common], help="list stored documents",
                   description="List the stored documents with their kind, chunks and pages, and the paths of copies stored once.")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("doctor", parents=[common], help="check the data dir; --repair rebuilds what can be rebuilt",
                       description="Check the database (integrity, migrations, orphan chunks), the search indexes "
                                   "against the database, the adapter registry, the model files' hashes and free "
                                   "disk. --repair rebuilds the indexes from the database, removes leftovers of "
                                   "interrupted writes and orphan chunks, and resets a damaged registry state; what "
                                   "it cannot repair (a damaged database) it names. Exit status 0 when it finds no "
                                   "problem (warnings allowed; JSON's \"clean\" means the same), 1 otherwise.")
    p.add_argument("--repair", action="store_true", help="repair what can be rebuilt")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("backup", parents=[common], help="a consistent copy of the data dir, safe while it is in use",
                       description="Copy the database with SQLite's backup API (consistent even while another "
                                   "process writes), the adapters and config.toml into DEST (a new folder). "
                                   "Indexes and the converted generator are rebuilt on first use.")
    p.add_argument("dest", metavar="DEST", help="a new folder outside the data dir")
    p = sub.add_parser("restore", parents=[common], help="make the data dir a backup's state",
                       description="Restore a backup made by `ragbot backup` into the data dir. A data dir that is "
                                   "not empty is replaced only with --replace, and then moved aside, not deleted. "
                                   "It refuses while an ingest writes to the data dir or a `ragbot chat` serves it "
                                   "(where the system has flock; elsewhere, stop the chat first).")
    p.add_argument("backup", metavar="BACKUP", help="a folder written by `ragbot backup`")
    p.add_argument("--replace", action="store_true", help="move the current data dir aside and restore in its place")
    _name_own_parsers(parser)
    return parser


def _name_own_parsers(parser: argparse.ArgumentParser) -> None:
    """Each command's parser stored in what it parses (`command_parser`), so that an error found
    after parsing shows that command's usage, not ragbot's whole list of commands (helper-74:
    `ragbot ask --bogus` and `ragbot ask ""` did). argparse lists subparsers only in its
    internal `_actions`; a parser seen there has no other public way to its commands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                command.set_defaults(command_parser=command)
                _name_own_parsers(command)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    own = getattr(args, "command_parser", parser)
    if unknown:
        own.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "search" and not args.query.strip():
        own.error("the query is empty")
    if args.command == "ask" and args.question is not None and not args.question.strip():
        own.error("the question is empty (give one, or none to ask interactively)")
    try:
        status = _run(args)
        sys.stdout.flush()  # here, not at exit: a reader gone meanwhile is caught below
        return status
    except RagbotError as exc:
        print(f"ragbot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nragbot: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _reader_gone():
            raise  # a pipe of ragbot's own broke, not its output's: a fault, shown as any other
        # The reader stopped reading (`ragbot search … | head`): nothing more to say. Standard
        # output goes to /dev/null, so Python's flush at exit does not fail on the closed pipe.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # standard output is no file (a caller's own stream)
            pass
        return 141  # as for a program the pipe's signal ended: 128 + SIGPIPE


def _reader_gone() -> bool:
    """Whether standard output's reader has gone: on a pipe whose reading end is closed, poll
    reports an error (Linux) or a hang-up (the BSDs, macOS). Where that cannot be asked (no poll,
    or standard output is not a file), a broken pipe is taken to be the output's, as before this
    was asked."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both of the last two
        return True


def _open(args: argparse.Namespace):
    from ragbot.bot import RagBot

    overrides = {
        "embedder": args.embedder,
        "generator": args.generator,
        "generator_backend": args.generator_backend,
        "allow_downloads": args.allow_downloads,
        "adapter": args.adapter,
        "answer_mode": args.answer_mode,
        "chunk_tokens": getattr(args, "chunk_tokens", None),
        "chunk_overlap": getattr(args, "chunk_overlap", None),
        "max_upload_mb": getattr(args, "max_upload_mb", None),
        "parallel_answers": getattr(args, "parallel_answers", None),
    }
    bot = RagBot.open(args.data_dir, **overrides)
    if bot.new_data_dir:
        print(f"ragbot: made a new data dir at {bot.settings.data_dir.resolve()}", file=sys.stderr)
    return bot


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "eval_command", None) == "report":
        return cmd_eval(None, args)  # reads run folders only: no data dir, no models
    if args.command in ("doctor", "backup", "restore"):  # they must not open (or create) the database first
        return MAINTENANCE[args.command](args)
    bot = _open(args)
    try:
        return COMMANDS[args.command](bot, args)
    finally:
        bot.close()


def _progress_bar(label: str, quiet: bool = False):
    """A tqdm bar (files, chunks/s) on stderr, as a callback for RagBot.ingest."""
    if quiet:
        return None, lambda: None
    from tqdm import tqdm

    # Until the files are counted and the models loaded, no count to show ("0file [00:00, ?file/s]").
    bar = tqdm(total=0, unit="file", desc=label, file=sys.stderr, dynamic_ncols=True, disable=None,
               bar_format="{desc}: loading the models and counting the files…")
    started = time.monotonic()

    def update(done: int, total: int, chunks: int) -> None:
        nonlocal started
        if done == 0 and chunks == 0:  # the ingest's first call, once the models are loaded: the rates
            bar.bar_format = None  # count from here, as the summary's does
            bar.reset(total=total)
            started = time.monotonic()
            return
        bar.total = total
        bar.n = done
        elapsed = max(time.monotonic() - started, 1e-9)
        bar.set_postfix_str(f"{chunks} chunks, {chunks / elapsed:.0f} chunks/s", refresh=True)

    return update, bar.close


def _print_report(report) -> None:
    from ragbot.ingest.encoding import guessed_note
    from ragbot.text import one_line

    for path, reason in report.failed:
        print(f"failed: {one_line(path)}: {reason}", file=sys.stderr)
    for path, reason in report.skipped:
        print(f"skipped: {one_line(path)}: {reason}", file=sys.stderr)
    for path, original in report.duplicates:
        print(f"duplicate: {one_line(path)}: the same bytes as {one_line(original)}, stored once")
    for old, new in report.moved:
        print(f"moved: {one_line(old)} -> {one_line(new)}: its file is gone and the new path holds its bytes, "
              "so it is stored under the new path only")
    for path, encoding in report.guessed_encodings:
        print(f"read as {encoding}: {one_line(path)}: {guessed_note(encoding)}")
    for path in report.removed:
        print(f"removed: {one_line(path)}")
    for path in report.gone:
        print(f"gone: {one_line(path)}: its file is no longer there; what it held is still searched until "
              "`ragbot ingest --prune` (or `ragbot remove` of its path)")
    for path, original in report.stood_in:
        print(f"stored in place: {one_line(path)}: it held what {one_line(original)} held, which was removed or changed")
    print(report.summary())


def cmd_ingest(bot, args) -> int:
    progress, close = _progress_bar("ingest", args.quiet)
    try:
        report = bot.ingest(args.paths, prune=args.prune, progress=progress, on_wait=_say_waiting)
    finally:
        close()
    _print_report(report)
    return 0 if report.ok else 1


def _say_waiting(message: str) -> None:
    from ragbot.text import one_line

    print(one_line(message), file=sys.stderr, flush=True)


def cmd_remove(bot, args) -> int:
    from ragbot.text import one_line

    report = bot.remove(args.paths, on_wait=_say_waiting)
    for source in report.removed:
        print(f"removed: {one_line(source)}")
    for path in report.copies_forgotten:
        print(f"no longer searched as a copy: {one_line(path)} (the file is untouched)")
    for path, original in report.stood_in:
        print(f"stored in place: {one_line(path)}: a copy of {one_line(original)}, so what it holds is still searched")
    for path, original in report.duplicates:
        print(f"duplicate: {one_line(path)}: the same bytes as {one_line(original)}, stored once")
    for path, reason in report.failed:
        print(f"failed: {one_line(path)}: {reason}; this copy of a removed document is not searched", file=sys.stderr)
    if not report.removed and not report.copies_forgotten:
        print("nothing stored under " + ", ".join(args.paths), file=sys.stderr)
        return 1
    print(f"removed {len(report.removed)} document(s)")
    # helper-83's drive: a routine ingest of the folder spent 100 s adding one back. (One whose
    # copy was stored in its place would be found a duplicate of that copy, not stored.)
    replaced = {original for _, original in report.stood_in}
    still_there = [s for s in report.removed if s not in replaced and os.path.isfile(s)]
    if still_there:
        which = "its file is" if len(report.removed) == 1 else \
            f"{len(still_there)} of their files {'is' if len(still_there) == 1 else 'are'}"
        print(f"{which} still on disk: ingesting a folder that holds "
              f"{'it stores it' if len(still_there) == 1 else 'them stores them'} again")
    return 1 if report.failed else 0


def _chosen_documents(bot, within: list[str] | None) -> list[str] | None:
    """The stored documents under the --in paths (None: search them all); a path holding none
    is an error that names it."""
    if not within:
        return None
    from ragbot.errors import RagbotError

    sources: dict[str, None] = {}
    for path in within:
        where = [str(Path(path).expanduser().resolve())]
        found = [d.source for d in bot.store.documents_under(where)]
        found += [original for _, original in bot.store.copies_under(where)]  # stored once, from another path
        if not found:
            raise RagbotError(f"no stored document is at {path}; see `ragbot documents`")
        sources.update((source, None) for source in found)
    return list(sources)


def cmd_search(bot, args) -> int:
    passages = bot.search(args.query, k=args.k, sources=_chosen_documents(bot, args.within))
    if args.json:
        print(json.dumps([p.to_dict() for p in passages], ensure_ascii=False, indent=2))
        return 0
    if not passages:
        print("no documents indexed yet: run `ragbot ingest PATH`")
    for p in passages:
        page = f", page {p.page}" if p.page is not None else ""
        print(f"[{p.rank}] {p.score:.3f}  {p.source}{page}  (chunk {p.chunk_id})")
        print(textwrap.indent(textwrap.shorten(p.text, 400), "    "))  # shorten reads a LINE_BREAK as a space
    note = search_order_note(passages, bot.settings.retrieval)
    if note:
        print(f"\n{note}")
    return 0


def search_order_note(passages, retrieval: str) -> str:
    """Why the scores shown do not fall down the list, when they do not (helper-58 read "[1]
    0.225" above "[2] 0.244" as a fault): the number is the shipped embedder's cosine, the order
    the search's own."""
    scores = [round(p.score, 3) for p in passages]  # as printed
    if all(a >= b for a, b in zip(scores, scores[1:])):
        return ""
    how = {"hybrid": "hybrid search, which also weighs the words query and passage share",
           "bm25": "BM25, by the words query and passage share"}.get(retrieval, "the ranking embedder")
    return (f"(The list is in the order of {how}; the number is the embedder's cosine similarity "
            f"with the query, so it need not fall down the list.)")


def _print_answer(answer) -> None:
    print(answer.answer)
    if answer.correction_of:
        from ragbot.answer.corrections import SAVED_CORRECTION

        print(f"\n({SAVED_CORRECTION}: given for the answer to \"{answer.corrected_question}\"; "
              f"`ragbot feedback vote {answer.correction_of} none` removes it)")
    if answer.citations:
        print("\nSources:")
        for c in answer.citations:
            page = f", page {c.page}" if c.page is not None else ""
            print(f"  [{c.n}] {c.source}{page} (score {c.score:.2f})")


def _ensure_corpus(bot, leave_out: bool = False, quiet: bool = False, can_leave_out: bool = True) -> None:
    """The shipped corpus ingested into a data dir that never held a document, unless the
    command's --no-default-corpus (`leave_out`) says not to; `quiet`: no progress bar (JSON
    output). `can_leave_out`: whether the command has that option, so the notice names it."""
    if leave_out:
        return
    if bot.never_held_documents() and bot.settings.default_corpus:
        how = " (--no-default-corpus leaves a new data dir empty)" if can_leave_out else ""
        print(f"First run: ingesting the shipped corpus from {bot.settings.default_corpus}{how}", file=sys.stderr)
        progress, close = _progress_bar("corpus", quiet)
        try:
            report = bot.ensure_default_corpus(progress=progress)
        finally:
            close()
        if report is not None:
            print(report.summary(), file=sys.stderr)


def cmd_ask(bot, args) -> int:
    from ragbot.bot import Conversation

    _ensure_corpus(bot, args.no_default_corpus, args.json)
    sources = _chosen_documents(bot, args.within)
    if args.question is not None:
        answer = bot.ask(args.question, k=args.k, temperature=args.temperature, sources=sources)
        if args.json:
            print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        else:
            _print_answer(answer)
            _say_searched_within(answer, args.within, sources)
            print(f"\n(answer id {answer.id}: `ragbot feedback vote {answer.id} up|down`)", file=sys.stderr)
        return 0
    # Interactive: load what answering needs before the first question, so answers start
    # quickly; the generator only in the generate mode (extract answers never load it).
    generating = bot.settings.answer_mode == "generate"
    print("Loading models…" + (" (the first time, the generator is prepared once: up to 30 s)" if generating else ""),
          file=sys.stderr)
    bot.warm_up()
    print("Ask a question about your documents (empty line or Ctrl-D to quit).")
    conversation_id = uuid.uuid4().hex
    turn = 0
    conversation = Conversation()  # what each turn searched (for follow-ups) and said (for the prompt)
    while True:
        try:
            question = input("\n> ").strip()
        except EOFError:
            print()
            return 0
        if not sys.stdin.isatty():  # a terminal echoes what is typed; piped questions are shown so (helper-74)
            print(question)
        if not question:
            return 0
        answer = None
        turn += 1
        # As on the chat page: a follow-up is searched with what the last answered turn searched
        # when that finds a closer passage.
        query = bot.standalone_query(conversation.searched, question)
        for event in bot.ask_stream(question, k=args.k, temperature=args.temperature,
                                    conversation_id=conversation_id, turn=turn, retrieval_query=query,
                                    history=conversation.history, sources=sources):
            if isinstance(event, str):
                print(event, end="", flush=True)
            else:
                answer = event
        print()
        if answer is None:
            continue
        conversation.add(question, query, answer)
        if answer.prompt and answer.answer != answer.raw_reply:  # citations added, or reply unsupported
            print(f"→ {answer.answer}")
        if answer.correction_of:
            from ragbot.answer.corrections import SAVED_CORRECTION

            print(f"  ({SAVED_CORRECTION}: given for the answer to \"{answer.corrected_question}\")")
        for c in answer.citations:
            page = f", page {c.page}" if c.page is not None else ""
            print(f"  [{c.n}] {c.source}{page}")
        _say_searched_within(answer, args.within, sources, indent="  ")
        print(f"  (answer {answer.id}: rate it with `ragbot feedback vote {answer.id} up|down`)")


def _say_searched_within(answer, within: list[str] | None, sources: list[str] | None, indent: str = "") -> None:
    """Under a refusal of a question asked with --in: that only those documents lack the answer,
    as the chat page says for its chosen documents (helper-83's drive)."""
    if within and sources is not None and answer.refused and not answer.correction_of:
        from ragbot.text import counted, one_line

        print(f"{indent}(searched only the {counted(len(sources), 'document')} under --in "
              f"{', '.join(one_line(path) for path in within)}; without --in, every stored document is searched)")


# What a number of `ragbot status` counts, where its name alone does not say.
STATUS_NOTES = {
    "generation": "writes to the search index so far (document changes, a new ranking embedder, repairs); "
                  "the saved indexes are named by it",
    "schema_version": "the database layout; a newer ragbot upgrades it in place",
}


def cmd_status(bot, args) -> int:
    status = bot.status()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        for key, value in status.items():
            note = f"  ({STATUS_NOTES[key]})" if key in STATUS_NOTES else ""
            print(f"{key:17} {value}{note}")
    return 0


def cmd_documents(bot, args) -> int:
    docs = bot.store.documents()
    copies: dict[str, list[str]] = {}  # document -> the paths of its copies
    for path, original in bot.store.copies():
        copies.setdefault(original, []).append(path)
    if args.json:
        print(json.dumps([{**d.__dict__, "copies": copies.get(d.source, [])} for d in docs], indent=2))
        return 0
    from ragbot.text import counted, one_line

    for d in docs:
        pages = f", {counted(d.n_pages, 'page')}" if d.n_pages else ""
        print(f"{one_line(d.source)}  ({d.kind}, {counted(d.n_chunks, 'chunk')}{pages})")
        for path in copies.get(d.source, ()):
            print(f"  also at {one_line(path)} (the same bytes, stored once)")
    n_copies = sum(map(len, copies.values()))
    print(f"{len(docs)} document(s)" + (f", {n_copies} {'copy' if n_copies == 1 else 'copies'}" if n_copies else ""))
    return 0


def _out_dir(bot, args, name: str):
    if args.out:
        return Path(args.out)
    return bot.settings.data_dir / "eval-runs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_eval(bot, args) -> int:
    from ragbot.evaluation import metrics as evaluate

    if args.eval_command == "report":
        from ragbot.evaluation.report import write_report

        path = write_report(Path(args.out), Path(args.run), Path(args.baseline) if args.baseline else None)
        print(f"wrote {path}")
        return 0
    if args.eval_command == "retrieval":
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        if bot.settings.retrieval not in modes:
            modes.append(bot.settings.retrieval)
        if args.feedback:
            if bot.store.ranking_embedder() and not any("@" in m for m in modes):
                modes.append(f"{bot.settings.retrieval}@shipped")  # what tuning the embedder changed
            name, results = "feedback", _retrieval_on_feedback(bot, modes, args.k)
        else:
            name, results = _retrieval_on_beir(bot, Path(args.beir).expanduser().resolve(), args, modes)
        result = results[bot.settings.retrieval]
        out = evaluate.save_run(_out_dir(bot, args, f"retrieval-{name}"), result.summary, result.per_query,
                                "per_query.jsonl")
        worst = sorted(result.per_query, key=lambda r: r["ndcg@10"])[:20]
        lines = ["# Worst queries by nDCG@10", "", "| nDCG@10 | query | relevant | retrieved top 3 |", "| --- | --- | --- | --- |"]
        lines += [f"| {r['ndcg@10']:.3f} | {r['query']} | {', '.join(r['relevant'])} | {', '.join(r['top'][:3])} |" for r in worst]
        (out / "worst.md").write_text("\n".join(lines) + "\n")
        first = modes[0]
        (out / "modes.json").write_text(json.dumps({m: r.summary for m, r in results.items()}, indent=2))
        if not args.json:
            print(f"| mode | nDCG@10 | recall@{args.k} | MRR@10 | wins / losses vs {first} | "
                  f"nDCG@10 vs {first} [95% CI] | search ms/query |")
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
            for mode, r in results.items():
                m = r.summary
                gain = m.get(f"ndcg@10_gain_vs_{first}")
                against = (f"{gain['mean']:+.3f} [{gain['ci95'][0]:+.3f}, {gain['ci95'][1]:+.3f}]"
                           if gain and gain["ci95"] else "–")
                print(f"| {mode} | {m['ndcg@10']:.3f} | {m[f'recall@{args.k}']:.3f} | {m['mrr@10']:.3f} | "
                      f"{m[f'wins_vs_{first}']} / {m[f'losses_vs_{first}']} | {against} | "
                      f"{m['search_ms_per_query']:.1f} |")
        summary = {**result.summary, "modes": {m: r.summary for m, r in results.items()}}
    else:
        _ensure_corpus(bot, quiet=args.json, can_leave_out=False)
        rows = evaluate.load_qa(Path(args.qa))
        summary, per_question = evaluate.evaluate_answers(bot, rows)
        out = evaluate.save_run(_out_dir(bot, args, "answers"), summary, per_question)
    if args.report:
        from ragbot.evaluation.report import write_report

        print(f"report: {write_report(Path(args.report), out)}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    else:
        print("\n".join(_summary_lines(summary)))
        print(f"written to {out}")
    return 0


def _summary_lines(summary: dict) -> list[str]:
    """An evaluation summary as aligned lines: each score with its bootstrap 95% interval where
    there is one ("ci95": {score: interval}, or "SCORE_ci95"), "–" where nothing was measured, a
    paired difference as its mean and interval, and `by_kind` as one line per kind."""
    def number(value) -> str:
        if value is None:
            return "–"
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    def interval(bounds, sign: str = "") -> str:
        return f"  [{bounds[0]:{sign}.4f}, {bounds[1]:{sign}.4f}]" if bounds else ""

    intervals = {**(summary.get("ci95") or {}),
                 **{k.removesuffix("_ci95"): v for k, v in summary.items() if k.endswith("_ci95")}}
    lines = []
    for key, value in summary.items():
        if key in ("modes", "ci95", "by_kind") or key.endswith("_ci95"):  # the table above; beside; below
            continue
        if isinstance(value, dict) and "mean" in value:  # a paired difference
            lines.append(f"{key:28} {value['mean']:+.4f}{interval(value.get('ci95'), '+')}")
        else:
            lines.append(f"{key:28} {number(value)}{interval(intervals.get(key))}")
    for kind, row in (summary.get("by_kind") or {}).items():
        lines.append(f"{'kind ' + (kind or '(none)'):28} {row['n']} questions, ROUGE-L {number(row['rougeL'])}, "
                     f"refused {row['refusal_rate']:.0%}")
    return lines


def cmd_chat(bot, args) -> int:
    import os

    from ragbot.errors import ConfigError
    from ragbot.interfaces.app import serve
    from ragbot.storage.files import serving, serving_lock_path

    auth = args.auth or os.environ.get("RAGBOT_AUTH")
    credentials = None
    if auth:
        user, sep, password = auth.partition(":")
        if not sep or not user or not password:
            raise ConfigError("--auth / RAGBOT_AUTH must look like user:password")
        credentials = [(user, password)]
    if args.share and not credentials:
        raise ConfigError("--share makes the chat reachable from the internet: also give --auth user:password "
                          "(or set RAGBOT_AUTH)")
    # Held while the server runs, so `ragbot restore` refuses to swap the data dir under it (and a
    # chat that starts during a restore waits for it here).
    with serving(bot.settings.data_dir) as locked:
        bot.check_not_replaced()  # restored between opening the database and taking the lock
        if not locked:
            print(f"warning: could not lock {serving_lock_path(bot.settings.data_dir)} (no flock here): "
                  f"`ragbot restore` will not know this chat is running; stop it before restoring", file=sys.stderr)
        _ensure_corpus(bot, args.no_default_corpus, args.json)
        print("Loading models and indexes…", file=sys.stderr)
        bot.embedder  # without it nothing works: a missing model stops the chat here
        if bot.settings.answer_mode == "generate":
            bot.generator
        try:
            bot.warm_up()  # so the first question does not wait for the indexes and logs
        except RagbotError as exc:  # the page still serves uploads, documents and the log
            print(f"warning: {exc}; questions may fail until it is fixed", file=sys.stderr)
        print(f"Serving on http://{args.host}:{args.port}/ (Ctrl-C to stop)", file=sys.stderr)
        serve(bot, host=args.host, port=args.port, share=args.share, auth=credentials)
    return 0


def _retrieval_on_beir(bot, beir: Path, args, modes: list[str]):
    from ragbot.bot import RagBot
    from ragbot.evaluation import metrics as evaluate

    data = evaluate.load_beir(beir, args.split)
    work = bot.settings.data_dir / "beir" / beir.name
    written = evaluate.write_beir_documents(data, work / "documents")
    print(f"{beir.name}: {len(data.corpus)} documents ({written} new or changed), "
          f"{len(data.qrels)} judged queries", file=sys.stderr)
    eval_bot = RagBot.open(work / "data", embedder=bot.settings.embedder, default_corpus=None,
                           retrieval=bot.settings.retrieval, lexical_weight=bot.settings.lexical_weight,
                           fusion=bot.settings.fusion)
    try:
        progress, close = _progress_bar("index", args.json)
        try:
            # Every copy stored: the judgements name documents, a copy's own name too.
            report = eval_bot.ingest([work / "documents"], prune=True, progress=progress, store_copies=True)
        finally:
            close()
        print(report.summary(), file=sys.stderr)
        return beir.name, evaluate.compare_retrieval(eval_bot, data, modes, k=args.k)
    finally:
        eval_bot.close()


def _retrieval_on_feedback(bot, modes: list[str], k: int):
    from ragbot.evaluation import metrics as evaluate

    liked = bot.feedback.relevant_passages()
    data = evaluate.graded_feedback(liked, bot.store)
    print(f"{len(data.qrels)} questions with their liked or corrected passages still stored "
          f"({len(liked)} liked answers and corrections citing passages in all); nDCG@10 also credits the "
          f"rest of a cited document, recall and MRR count the cited passages", file=sys.stderr)
    if not data.qrels:
        raise RagbotError("no liked answers to judge retrieval by: give answers a thumbs-up in the chat "
                          "(or `ragbot feedback vote ID up`), then run this again")
    return evaluate.compare_retrieval(bot, data, modes, k=k, unit=evaluate.chunk_unit)


def cmd_feedback(bot, args) -> int:
    log = bot.feedback
    if args.feedback_command == "vote":
        vote = {"up": 1, "down": -1, "none": None}[args.vote]
        # A vote keeps the comment and correction saved with the answer, as the chat's thumbs do:
        # `vote ID up` once erased them. Given, even empty, they replace them.
        before = log.feedback(args.answer_id)
        comment = args.comment if args.comment is not None else before.comment if before else None
        correction = args.correction if args.correction is not None else before.correction if before else None
        current = log.set_feedback(args.answer_id, vote, comment, correction, args.user)
        kept = [name for name, given, text in (("comment", args.comment, comment),
                                               ("correction", args.correction, correction)) if given is None and text]
        flags = " or ".join(f'--{name} ""' for name in kept)
        print(f"{args.answer_id}: " + ("no feedback" if current is None else f"vote {args.vote}")
              + (f"; kept: its {' and '.join(kept)} ({flags} removes {'it' if len(kept) == 1 else 'one'})"
                 if kept else ""))
    elif args.feedback_command == "show":
        trace = log.answer_trace(args.answer_id)
        current = log.feedback(args.answer_id)
        trace["feedback"] = current.__dict__ if current else None
        trace["history"] = log.history(args.answer_id)
        print(json.dumps(trace, indent=2, ensure_ascii=False))
    elif args.feedback_command == "stats":
        rows = log.stats()
        if args.json:
            print(json.dumps(rows, indent=2))
        for r in [] if args.json else rows:
            rate = "–" if r["up_rate"] is None else f"{r['up_rate']:.0%}"
            print(f"{r['model']} + {r['adapter'] or 'no adapter'}: {r['answers']} answers, {r['up']} up, "
                  f"{r['down']} down ({rate} up), {r['corrections']} corrections, {r['refused']} refused")
        if not rows and not args.json:
            print("no answers recorded yet")
    else:
        n = log.export(args.format, args.out)
        print(f"wrote {n} {args.format} rows to {args.out}")
        left_out = log.votes_on_quotes()
        if left_out:
            print(f"left out: {left_out} voted answer(s) that no model wrote (quoted from the documents in the "
                  f"extract answer mode, or refused before the generator ran): there is no prompt to train on",
                  file=sys.stderr)
    return 0


# TuneConfig's fields by the flag that sets them.
_TUNE_FLAGS = {"max_steps": "--max-steps", "time_budget_min": "--time-budget", "model_questions": "--model-questions",
               "preference": "--preference", "sft_epochs": "--epochs", "heldout_fraction": "--heldout",
               "gate_questions": "--gate-questions", "gate_max_new_tokens": "--gate-max-new-tokens",
               "save_steps": "--save-steps", "activate": "--activate", "seed": "--seed", "fresh": "--fresh",
               "answerability_check": "--no-answerability-check", "false_refusal": "--false-refusal"}


def cmd_tune(bot, args) -> int:
    from ragbot.learn.tune import TuneConfig, tune

    if args.retriever:
        return _tune_retriever(bot, args)
    _ensure_corpus(bot, args.no_default_corpus)
    options = {
        "max_steps": args.max_steps, "time_budget_min": args.time_budget, "model_questions": args.model_questions,
        "preference": args.preference, "sft_epochs": args.epochs, "heldout_fraction": args.heldout,
        "gate_questions": args.gate_questions, "gate_max_new_tokens": args.gate_max_new_tokens,
        "save_steps": args.save_steps, "activate": args.activate, "seed": args.seed,
        "fresh": args.fresh or None, "answerability_check": False if args.no_answerability_check else None,
        "false_refusal": args.false_refusal,
    }
    options = {k: v for k, v in options.items() if v is not None}
    config = TuneConfig.quick(**options) if args.quick else TuneConfig(**options)
    # What was given, by its flag: a resumed run names those it does not use, not every default.
    named = {field: _TUNE_FLAGS[field] for field in options}
    if args.quick:
        named.update({field: f"--quick's {field}" for field in TuneConfig.QUICK if field not in named})
    result = tune(bot, config, new=args.new, log=lambda line: print(line, file=sys.stderr), named=named)
    state = "activated" if result.activated else "saved, not activated"
    print(f"adapter {result.version}: {state} (run folder {result.run_dir})")
    return 0


_GENERATOR_ONLY = ("quick", "time_budget", "model_questions", "preference", "epochs", "gate_questions",
                   "gate_max_new_tokens", "save_steps", "no_answerability_check", "false_refusal", "fresh", "new")


def _tune_retriever(bot, args) -> int:
    from ragbot.learn.retriever import RetrieverConfig, tune_retriever

    given = [f"--{name.replace('_', '-')}" for name in _GENERATOR_ONLY
             if getattr(args, name, None) is not None and getattr(args, name) is not False]  # 0 is given
    if given:
        raise RagbotError(f"{', '.join(given)} tune the generator and do not apply with --retriever")
    options = {"max_steps": args.max_steps, "heldout_fraction": args.heldout, "activate": args.activate,
               "seed": args.seed}
    config = RetrieverConfig(**{k: v for k, v in options.items() if v is not None})
    result = tune_retriever(bot, config, log=lambda line: print(line, file=sys.stderr))
    state = "ranks passages now" if result.activated else "saved, not ranking"
    print(f"embedder {result.version}: {state} ({result.gate['reason']})")
    return 0


def _model_embedders(bot, args) -> int:
    from ragbot.learn.registry import EmbedderRegistry

    if args.model_command in ("activate", "rollback"):
        from tqdm import tqdm

        with tqdm(desc="embedding the chunks", unit="chunk", file=sys.stderr, disable=None) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            if args.model_command == "rollback":
                now = bot.rollback_ranking(progress=progress, on_wait=_say_waiting)
            else:
                version = None if args.version in ("none", "shipped") else args.version
                now = bot.rank_with(version, progress=progress, on_wait=_say_waiting)
        print(f"ranking passages: {now or 'the shipped embedder'}")
        return 0
    ranking, versions = bot.store.ranking_embedder(), EmbedderRegistry(bot.settings.embedders_dir).versions()
    if args.json:
        print(json.dumps({"ranking": ranking, "embedders": [
            {"version": v.version, "path": str(v.path), **v.metadata} for v in versions]}, indent=2, default=str))
        return 0
    if not versions:
        print("no tuned embedders yet: run `ragbot tune --retriever`")
        return 0
    print(f"{'':2}{'version':8} {'created':16} {'pairs':>6} {'held out':>8} {'nDCG@10 before -> after':24} gate")
    for v in versions:
        meta, gate = v.metadata, v.metadata.get("gate") or {}
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(meta.get("created_at", 0)))
        scores = (f"{gate['active_ndcg@10']:.3f} -> {gate['candidate_ndcg@10']:.3f}" if gate else "")
        verdict = "passed" if gate.get("promote") else "failed" if gate else "not run"
        print(f"{'*' if v.version == ranking else ' ':2}{v.version:8} {created:16} "
              f"{(meta.get('training') or {}).get('pairs', ''):>6} {gate.get('questions', ''):>8} {scores:24} {verdict}")
    if ranking is None:
        print("ranking passages: the shipped embedder")
    return 0


def cmd_model(bot, args) -> int:
    from ragbot.learn.registry import AdapterRegistry

    if args.retriever:
        return _model_embedders(bot, args)
    registry = AdapterRegistry(bot.settings.adapters_dir)
    if args.model_command == "activate":
        before = registry.state()["active"]
        info = registry.activate(args.version)
        print(f"active: {info.version if info else 'none (the base model)'}")
        gate = (info.metadata.get("gate") or {}) if info else {}
        if gate and not gate.get("promoted"):  # said, not refused: activating it anyway is the user's call
            back = (" `ragbot model rollback` goes back to the one active before." if before != info.version else "")
            print(f"warning: {info.version} failed its gate ({'; '.join(gate.get('reasons') or [])}); it is active "
                  f"anyway.{back}", file=sys.stderr)
        return 0
    if args.model_command == "rollback":
        info = registry.rollback()
        print(f"active: {info.version if info else 'none (the base model)'}")
        return 0
    active = registry.state()["active"]
    versions = registry.versions()
    if args.json:
        print(json.dumps({"active": active, "adapters": [
            {"version": v.version, "path": str(v.path), **v.metadata} for v in versions]}, indent=2, default=str))
        return 0
    if not versions:
        print("no adapters yet: run `ragbot tune`")
        return 0
    print(f"{'':2}{'version':8} {'created':16} {'base model':24} {'parent':7} {'train':>6} {'utility':>7}  {'gate':8} check")
    for v in versions:
        meta = v.metadata
        gate = meta.get("gate") or {}
        score = (gate.get("candidate") or {}).get("utility")
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(meta.get("created_at", 0)))
        train = (meta.get("counts") or {}).get("train", {}).get("total", "")
        verdict = "passed" if gate.get("promoted") else "failed" if gate else "not run"
        print(f"{'*' if v.version == active else ' ':2}{v.version:8} {created:16} {meta.get('base_model', ''):24} "
              f"{meta.get('parent') or '-':7} {train:>6} {'' if score is None else f'{score:.3f}':>7}  {verdict:8} "
              f"{'yes' if meta.get('answerability') else 'no'}")
    if active is None:
        print("active: none (the base model)")
    return 0


COMMANDS = {
    "tune": cmd_tune,
    "model": cmd_model,
    "chat": cmd_chat,
    "feedback": cmd_feedback,
    "eval": cmd_eval,
    "ingest": cmd_ingest,
    "remove": cmd_remove,
    "search": cmd_search,
    "ask": cmd_ask,
    "status": cmd_status,
    "documents": cmd_documents,
}



def _data_dir(args) -> Path:
    from ragbot.settings import default_data_dir

    return Path(args.data_dir).expanduser() if getattr(args, "data_dir", None) else default_data_dir()


def cmd_doctor(args) -> int:
    from ragbot.storage.doctor import doctor

    report = doctor(_data_dir(args), repair=args.repair)
    if args.json:
        print(json.dumps({"clean": report.clean, "repairable": report.repairable,
                          "findings": [f.__dict__ for f in report.findings]}, indent=2))
    else:
        from ragbot.text import counted

        print("\n".join(report.lines()))
        hint = " (try --repair)" if report.repairable and not args.repair else ""
        # "clean" under warnings read as a contradiction (helper-74): a warning is no fault, but it is counted.
        warnings = sum(f.status == "warning" for f in report.findings)
        if not report.clean:
            print(f"problems found{hint}")
        else:
            print("clean" if not warnings else f"no problems; {counted(warnings, 'warning')} above")
    return 0 if report.clean else 1


def cmd_backup(args) -> int:
    from ragbot.storage.doctor import backup

    manifest = backup(_data_dir(args), Path(args.dest))
    counts = ", ".join(f"{n} {name}" for name, n in manifest["counts"].items())
    print(f"backed up {_data_dir(args)} to {Path(args.dest).expanduser().resolve()} ({counts})")
    return 0


def cmd_restore(args) -> int:
    from ragbot.storage.doctor import restore

    done = restore(Path(args.backup), _data_dir(args), replace=args.replace)
    print(f"restored {args.backup} into {_data_dir(args)} (backup of {time.strftime('%Y-%m-%d %H:%M', time.localtime(done['created_at']))})"
          + (f"; the previous data dir is at {done['moved_aside']}" if done["moved_aside"] else ""))
    return 0


MAINTENANCE = {"doctor": cmd_doctor, "backup": cmd_backup, "restore": cmd_restore}


if __name__ == "__main__":
    sys.exit(main())
