"""The `ragbot` command: translates arguments into RagBot calls and results into text.

Domain errors (RagbotError) become one-line messages and exit status 2 here, nowhere else.
Exit status: 0 success, 1 some input files failed, 2 an error stopped the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time

from .errors import RagbotError

EPILOG = """\
The data dir holds the database, the vector index and converted models. It is --data-dir,
else $RAGBOT_HOME, else ~/.local/share/ragbot. Settings can also go in <data dir>/config.toml
or RAGBOT_<NAME> environment variables (e.g. RAGBOT_TOP_K=8).
"""


def _common(default) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", metavar="DIR", default=default,
                        help="where ragbot keeps its index and database")
    common.add_argument("--embedder", default=default, help="embedder: built-in name, local model dir or hub id")
    common.add_argument("--generator", default=default, help="generator: built-in name, local model dir or hub id")
    common.add_argument("--allow-downloads", action="store_true", default=default,
                        help="allow fetching models from the Hugging Face hub (off by default)")
    return common


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

    p = sub.add_parser("ingest", parents=[common], help="add or update documents (PDF, Markdown, text, HTML)",
                       description="Read files and folders (recursively), chunk and embed them. Unchanged "
                                   "files are skipped; changed files replace their old chunks.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.add_argument("--prune", action="store_true", help="also drop stored documents whose files are gone")
    p.add_argument("--chunk-tokens", type=int, help="chunk size in embedder tokens (default 200)")
    p.add_argument("--chunk-overlap", type=int, help="overlap between chunks in tokens (default 40)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("remove", parents=[common], help="remove documents (a file, or every file under a folder)")
    p.add_argument("paths", nargs="+", metavar="PATH")

    p = sub.add_parser("search", parents=[common], help="show the passages that best match a query")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5, help="number of passages (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("ask", parents=[common], help="answer a question from the documents, with citations",
                       description="Answer QUESTION from the documents. Without QUESTION, ask interactively.")
    p.add_argument("question", nargs="?")
    p.add_argument("-k", type=int, help="passages to retrieve (default 5)")
    p.add_argument("--temperature", type=float, help="0 for greedy decoding (default)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-default-corpus", action="store_true",
                   help="do not ingest the shipped corpus into an empty data dir")

    p = sub.add_parser("status", parents=[common], help="what the data dir holds")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("documents", parents=[common], help="list stored documents")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except RagbotError as exc:
        print(f"ragbot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nragbot: interrupted", file=sys.stderr)
        return 130


def _open(args: argparse.Namespace):
    from .bot import RagBot

    overrides = {
        "embedder": args.embedder,
        "generator": args.generator,
        "allow_downloads": args.allow_downloads,
        "chunk_tokens": getattr(args, "chunk_tokens", None),
        "chunk_overlap": getattr(args, "chunk_overlap", None),
    }
    return RagBot.open(args.data_dir, **overrides)


def _run(args: argparse.Namespace) -> int:
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

    bar = tqdm(total=0, unit="file", desc=label, file=sys.stderr, dynamic_ncols=True, disable=None)
    started = time.monotonic()

    def update(done: int, total: int, chunks: int) -> None:
        bar.total = total
        bar.n = done
        elapsed = max(time.monotonic() - started, 1e-9)
        bar.set_postfix_str(f"{chunks} chunks, {chunks / elapsed:.0f} chunks/s", refresh=True)

    return update, bar.close


def _print_report(report) -> None:
    for path, reason in report.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    for path, reason in report.skipped:
        print(f"skipped: {path}: {reason}", file=sys.stderr)
    for path in report.removed:
        print(f"removed: {path}")
    print(report.summary())


def cmd_ingest(bot, args) -> int:
    progress, close = _progress_bar("ingest", args.quiet)
    try:
        report = bot.ingest(args.paths, prune=args.prune, progress=progress)
    finally:
        close()
    _print_report(report)
    return 0 if report.ok else 1


def cmd_remove(bot, args) -> int:
    removed = bot.remove(args.paths)
    for source in removed:
        print(f"removed: {source}")
    if not removed:
        print("nothing stored under " + ", ".join(args.paths), file=sys.stderr)
        return 1
    print(f"removed {len(removed)} document(s)")
    return 0


def cmd_search(bot, args) -> int:
    passages = bot.search(args.query, k=args.k)
    if args.json:
        print(json.dumps([p.to_dict() for p in passages], ensure_ascii=False, indent=2))
        return 0
    if not passages:
        print("no documents indexed yet: run `ragbot ingest PATH`")
    for p in passages:
        page = f" p.{p.page}" if p.page is not None else ""
        print(f"[{p.rank}] {p.score:.3f}  {p.source}{page}  (chunk {p.chunk_id})")
        print(textwrap.indent(textwrap.shorten(p.text, 400), "    "))
    return 0


def _print_answer(answer) -> None:
    print(answer.answer)
    if answer.citations:
        print("\nSources:")
        for c in answer.citations:
            page = f", page {c.page}" if c.page is not None else ""
            print(f"  [{c.n}] {c.source}{page} (score {c.score:.2f})")


def _ensure_corpus(bot, args) -> None:
    if args.no_default_corpus:
        return
    if bot.store.counts()[0] == 0 and bot.settings.default_corpus:
        print(f"First run: ingesting the shipped corpus from {bot.settings.default_corpus}", file=sys.stderr)
        progress, close = _progress_bar("corpus", args.json)
        try:
            report = bot.ensure_default_corpus(progress=progress)
        finally:
            close()
        if report is not None:
            print(report.summary(), file=sys.stderr)


def cmd_ask(bot, args) -> int:
    _ensure_corpus(bot, args)
    if args.question:
        answer = bot.ask(args.question, k=args.k, temperature=args.temperature)
        if args.json:
            print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        else:
            _print_answer(answer)
        return 0
    # Interactive: load the models before the first question so answers start quickly.
    print("Loading models… (the first time, the generator is converted once: about 30 s)", file=sys.stderr)
    bot.embedder, bot.generator
    print("Ask a question about your documents (empty line or Ctrl-D to quit).")
    while True:
        try:
            question = input("\n> ").strip()
        except EOFError:
            print()
            return 0
        if not question:
            return 0
        answer = None
        for event in bot.ask_stream(question, k=args.k, temperature=args.temperature):
            if isinstance(event, str):
                print(event, end="", flush=True)
            else:
                answer = event
        print()
        if answer is None:
            continue
        if answer.prompt and answer.answer != answer.raw_reply:  # citations added, or reply unsupported
            print(f"→ {answer.answer}")
        for c in answer.citations:
            page = f", page {c.page}" if c.page is not None else ""
            print(f"  [{c.n}] {c.source}{page}")


def cmd_status(bot, args) -> int:
    status = bot.status()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        for key, value in status.items():
            print(f"{key:15} {value}")
    return 0


def cmd_documents(bot, args) -> int:
    docs = bot.store.documents()
    if args.json:
        print(json.dumps([d.__dict__ for d in docs], indent=2))
        return 0
    for d in docs:
        pages = f", {d.n_pages} pages" if d.n_pages else ""
        print(f"{d.source}  ({d.kind}, {d.n_chunks} chunks{pages})")
    print(f"{len(docs)} document(s)")
    return 0


COMMANDS = {
    "ingest": cmd_ingest,
    "remove": cmd_remove,
    "search": cmd_search,
    "ask": cmd_ask,
    "status": cmd_status,
    "documents": cmd_documents,
}

if __name__ == "__main__":
    sys.exit(main())
