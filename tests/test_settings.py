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
    assert main(["status", "--json", "--data-dir", str(bot.settings.data_dir)]) == 0
    assert isinstance(json.loads(capsys.readouterr().out)["generation"], int)  # the JSON keeps the plain number
