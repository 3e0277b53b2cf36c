import json

import pytest

from ragbot.interfaces.cli import build_parser
from ragbot.errors import ConfigError
from ragbot.settings import load_settings, with_overrides


def test_precedence_file_then_env_then_flags(tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text("top_k = 7\nmin_score = 0.4\ntemperature = 0.3\n")
    monkeypatch.setenv("RAGBOT_MIN_SCORE", "0.5")
    settings = load_settings(tmp_path, temperature=0.0)
    assert settings.top_k == 7  # file
    assert settings.min_score == 0.5  # env beats file
    assert settings.temperature == 0.0  # flag beats both
    assert settings.db_path == tmp_path / "ragbot.db"


def test_data_dir_from_ragbot_home(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGBOT_HOME", str(tmp_path / "home"))
    assert load_settings().data_dir == tmp_path / "home"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("top_k = 0", "top_k must be at least 1"),
        ("chunk_overlap = 150", "chunk_overlap must be between"),
        ("dtype = 'float8'", "dtype must be"),
        ("colour = 'blue'", "unknown setting 'colour'"),
        ("top_k = [", "not valid TOML"),
        ("top_k = 'many'", "cannot read 'many' as int"),
        ("fusion = 'votes'", "fusion must be ranks or scores"),
        ("follow_up_rank = 1.5", "follow_up_rank must be between 0 and 1"),
    ],
)
def test_bad_settings_say_what_is_wrong(tmp_path, config, message):
    (tmp_path / "config.toml").write_text(config + "\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path)


def test_overrides_are_validated(tmp_path):
    settings = load_settings(tmp_path)
    assert with_overrides(settings, top_k=3).top_k == 3
    with pytest.raises(ConfigError):
        with_overrides(settings, max_new_tokens=5000)


def test_common_options_work_before_and_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["--data-dir", "/a", "search", "q"]).data_dir == "/a"
    assert parser.parse_args(["search", "q", "--data-dir", "/b"]).data_dir == "/b"
    assert parser.parse_args(["search", "q"]).data_dir is None
    # Also between a command group and its own command (`feedback --data-dir X stats` was a usage error).
    for argv in (["feedback", "--data-dir", "/c", "stats"], ["model", "--data-dir", "/c", "list"],
                 ["eval", "--data-dir", "/c", "answers", "--qa", "qa.jsonl"]):
        assert parser.parse_args(argv).data_dir == "/c"
    assert parser.parse_args(["feedback", "--data-dir", "/c", "stats", "--data-dir", "/d"]).data_dir == "/d"


@pytest.mark.parametrize(("argv", "said"), [
    (["search", "GAN", "-k", "0"], "argument -k: must be at least 1 (got 0)"),
    (["ask", "What is a GAN?", "-k", "-3"], "argument -k: must be at least 1 (got -3)"),
    (["eval", "retrieval", "--feedback", "-k", "0"], "argument -k: must be at least 1 (got 0)"),
    (["search", "GAN", "-k", "five"], "argument -k: not a whole number: 'five'"),
    (["tune", "--max-steps", "0"], "argument --max-steps: must be at least 1 (got 0)"),
    (["tune", "--gate-questions", "-1"], "argument --gate-questions: must be at least 1 (got -1)"),
    # Each of these started a run (helper-81's drive); the range errors named setting names, not flags.
    (["tune", "--epochs", "0"], "argument --epochs: must be above 0 and finite (got 0)"),
    (["tune", "--epochs", "-1"], "argument --epochs: must be above 0 and finite (got -1)"),
    (["tune", "--time-budget", "0"], "argument --time-budget: must be above 0 and finite (got 0)"),
    (["tune", "--time-budget", "nan"], "argument --time-budget: must be above 0 and finite (got nan)"),
    (["tune", "--heldout", "1.5"], "argument --heldout: must be at least 0 and below 1 (got 1.5)"),
    (["tune", "--false-refusal", "2"], "argument --false-refusal: must be at least 0 and below 0.5 (got 2)"),
    (["tune", "--model-questions", "-4"], "argument --model-questions: must be 0 or more (got -4)"),
    (["tune", "--heldout", "a fifth"], "argument --heldout: not a number: 'a fifth'"),
    (["tune", "--epochs", "1e400"], "argument --epochs: must be above 0 and finite (got 1e400)"),
    (["ask", "What is a GAN?", "--temperature", "-1"], "argument --temperature: must be between 0 and 2 (got -1)"),
    (["chat", "--port", "99999"], "argument --port: must be between 1 and 65535 (got 99999)"),
])
def test_a_number_out_of_its_range_is_a_usage_error(argv, said, capsys):
    # -k 0 searched with the default 5 and -k -1 returned every passage, without a word.
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(argv)
    assert stopped.value.code == 2
    assert said in capsys.readouterr().err


def test_a_data_dir_that_cannot_be_one_is_said_in_one_line(tmp_path, capsys):
    from ragbot.interfaces.cli import main

    note = tmp_path / "note.md"
    note.write_text("# a note\n")
    assert main(["status", "--data-dir", str(note)]) == 2
    assert capsys.readouterr().err == f"ragbot: cannot use {note} as the data dir: a file, not a folder\n"
    assert note.read_text() == "# a note\n"


def test_a_new_data_dir_is_announced_once(tmp_path, capsys):
    # A mistyped --data-dir was made without a word (and `ask` then ingested the shipped corpus there).
    from ragbot.interfaces.cli import main

    typo = tmp_path / "ragbto"
    assert main(["status", "--data-dir", str(typo)]) == 0
    assert capsys.readouterr().err == f"ragbot: made a new data dir at {typo}\n"
    assert main(["status", "--data-dir", str(typo)]) == 0
    assert capsys.readouterr().err == ""


def test_a_data_dir_this_user_cannot_use_is_said_in_one_line(tmp_path, capsys, monkeypatch):
    # Both ended in a PermissionError traceback. Tests may run as root, whom permissions do not
    # stop, so the operating system's answers are stood in for.
    import os
    from pathlib import Path

    from ragbot.interfaces.cli import main

    real_is_file = Path.is_file

    def is_file(path):  # the data dir's parent may not be entered
        if path.name == "config.toml" and "locked" in path.parts:
            raise PermissionError(13, "Permission denied", str(path))
        return real_is_file(path)

    monkeypatch.setattr(Path, "is_file", is_file)
    assert main(["status", "--data-dir", str(tmp_path / "locked" / "data")]) == 2
    assert capsys.readouterr().err == f"ragbot: cannot use {tmp_path / 'locked' / 'data'} as the data dir: Permission denied\n"
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != read_only)
    assert main(["status", "--data-dir", str(read_only)]) == 2
    assert capsys.readouterr().err == (f"ragbot: cannot use {read_only} as the data dir: this user may not write "
                                       f"there (permission denied)\n")
    assert list(read_only.iterdir()) == []


@pytest.mark.parametrize("lines", [100_000, 120])
def test_output_cut_off_by_its_reader_ends_quietly(lines):
    # `ragbot search … | head -3` ended in a BrokenPipeError traceback. 100,000 lines break the
    # pipe while the command writes; 120 lines (12 KB) leave the last ones in Python's buffer, and
    # the command waits until its reader has gone, so the pipe breaks on the last flush.
    import os
    import subprocess
    import sys

    code = ("import sys\nfrom ragbot.interfaces import cli\n"
            f"def run(args):\n    for _ in range({lines}):\n        print('passage ' * 12)\n"
            "    sys.stdin.read()\n    return 0\n"
            "cli._run = run\nsys.exit(cli.main(['status']))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as in a terminal's pipe
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    assert proc.stdout.read(100).startswith(b"passage")
    proc.stdout.close()  # the reader goes, as `head` does
    proc.stdin.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141 and err == b""


def test_a_broken_pipe_that_is_not_the_outputs_is_not_hidden():
    # Every BrokenPipeError ended quietly with 141, as if the output's reader had gone, though
    # one from a pipe of ragbot's own is a fault to show.
    import subprocess
    import sys

    code = ("import sys\nfrom ragbot.interfaces import cli\n"
            "def run(args):\n    print('passage')\n    raise BrokenPipeError(32, 'Broken pipe')\n"
            "cli._run = run\nsys.exit(cli.main(['status']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == 1 and b"BrokenPipeError" in proc.stderr, proc


def test_help_explains_every_command(capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for command in ("ingest", "remove", "search", "ask", "status", "documents"):
        assert command in text
    assert "RAGBOT_HOME" in text


def test_a_commands_help_lists_its_own_options_before_the_shared_settings(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ask", "--help"])
    text = capsys.readouterr().out
    own, shared = text.split("settings every command takes")
    assert "--json" in own and "--in PATH" in own and "--data-dir DIR" not in own.split("options:")[1]
    assert "--data-dir DIR" in shared and "--answer-mode" in shared and "--json" not in shared
    assert "leave it out to chat in the terminal" in own


def test_status_says_what_its_counters_count(make_bot, capsys):
    """`ragbot status` printed "generation 19" with nothing to say what 19 counts."""
    from ragbot.interfaces.cli import main

    bot = make_bot()
    assert main(["status", "--data-dir", str(bot.settings.data_dir)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["generation"].endswith("(writes to the search index so far (document changes, a new ranking "
                                        "embedder, repairs); the saved indexes are named by it)")
    assert "database layout" in lines["schema_version"] and "(" not in lines["documents"]
    assert lines["fusion"].split(None, 1)[1] == "ranks (BM25's weight 1)"  # how hybrid search fuses its rankings
    assert main(["status", "--json", "--data-dir", str(bot.settings.data_dir)]) == 0
    assert isinstance(json.loads(capsys.readouterr().out)["generation"], int)  # the JSON keeps the plain number


def test_a_commands_mistake_shows_that_commands_usage(capsys):
    # `ragbot ask --bogus x` and `ragbot ask ""` printed ragbot's own usage, every command listed (helper-74).
    from ragbot.interfaces.cli import main

    for argv, said in ((["ask", "--bogus", "x"], "unrecognized arguments: --bogus"),
                       (["ask", "  "], "the question is empty"),
                       (["search", ""], "the query is empty"),
                       (["feedback", "stats", "--nope"], "unrecognized arguments: --nope")):
        with pytest.raises(SystemExit) as done:
            main(argv)
        err = capsys.readouterr().err
        command = " ".join(argv[:2] if argv[0] == "feedback" else argv[:1])
        assert done.value.code == 2 and err.startswith(f"usage: ragbot {command} "), err
        assert f"ragbot {command}: error: {said}" in err and "COMMAND" not in err, err


def test_search_takes_the_top_k_setting_as_ask_does(corpus_bot, monkeypatch, capsys):
    # `RAGBOT_TOP_K=2 ragbot search …` printed five passages; `ask` took the setting (helper-74).
    from ragbot.interfaces.cli import main

    monkeypatch.setenv("RAGBOT_TOP_K", "2")
    assert main(["search", "generative adversarial networks", "--json", "--data-dir", str(corpus_bot.settings.data_dir)]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert main(["search", "generative adversarial networks", "-k", "3", "--json",
                 "--data-dir", str(corpus_bot.settings.data_dir)]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_a_data_dir_ragbot_makes_is_its_owners_alone(tmp_path):
    # Its database holds the user's documents, questions and votes; it was made readable by all
    # (644 in a 755 folder, under the usual umask).
    import stat

    from ragbot import RagBot

    import os

    umask = os.umask(0o022)  # the usual one, under which a folder was made readable by all
    try:
        bot = RagBot.open(tmp_path / "parent" / "data")
    finally:
        os.umask(umask)
    try:
        assert stat.S_IMODE((tmp_path / "parent" / "data").stat().st_mode) & 0o077 == 0
    finally:
        bot.close()
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    RagBot.open(shared).close()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # an existing folder keeps its mode
