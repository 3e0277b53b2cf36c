"""End to end with the real shipped models: retrieve, generate, cite; refuse what is not there."""

import json
import re

import pytest
import subprocess
import sys
from pathlib import Path

from ragbot.answer.generation import REFUSAL

from conftest import ROOT


def test_answer_cites_a_passage_from_the_right_document(corpus_bot):
    answer = corpus_bot.ask("Who introduced the variational autoencoder?")
    assert not answer.refused, answer.raw_reply
    assert answer.citations, answer.answer
    cited_docs = {Path(c.source).name for c in answer.citations}
    assert "vaes.md" in cited_docs
    for c in answer.citations:
        assert f"[{c.n}]" in answer.answer
        shown = answer.passages[c.n - 1]
        assert (shown.chunk_id, shown.text) == (c.chunk_id, c.text)
    assert "Kingma" in answer.answer
    # The default answer quotes the passages: no model call, so no prompt and no tokens.
    assert answer.prompt == "" and answer.tokens == {"prompt": 0, "completion": 0}
    assert answer.model == "SmolLM2-135M-Instruct" and answer.adapter is None
    trace = corpus_bot.feedback.answer_trace(answer.id)  # recorded with its full trace
    assert trace["prompt"] == answer.prompt and trace["answer"] == answer.answer
    assert [p["chunk_id"] for p in trace["passages"]] == [p.chunk_id for p in answer.passages]
    assert trace["index_generation"] == corpus_bot.store.generation()
    assert trace["params"]["answer_mode"] == "extract"
    assert trace["params"]["evidence_score"] == round(answer.evidence_score, 4)


def test_the_log_keeps_the_search_order_an_extract_renumbers(corpus_bot):
    """An extract numbers its cited passage [1]; the trace also keeps where the search put each
    passage, so what the search ranked first is not lost."""
    answer = corpus_bot.ask("What is a diffusion model?")
    trace = corpus_bot.feedback.answer_trace(answer.id)
    assert [p["rank"] for p in trace["passages"]] == [p.rank for p in answer.passages]
    searched = [p["chunk_id"] for p in sorted(trace["passages"], key=lambda p: p["search_rank"])]
    assert searched == [p.chunk_id for p in corpus_bot.search(trace["retrieval_query"])]
    assert [p["search_rank"] for p in trace["passages"]] == [p.search_rank for p in answer.passages]
    assert [p["search_rank"] for p in answer.to_dict()["passages"]] == [p.search_rank for p in answer.passages]


@pytest.mark.slow
def test_the_generate_mode_has_the_model_write_from_the_passages(corpus_bot):
    bot = corpus_bot.with_settings(answer_mode="generate")
    answer = bot.ask("Who introduced the variational autoencoder?")
    assert not answer.refused, answer.raw_reply
    assert "vaes.md" in {Path(c.source).name for c in answer.citations}
    assert answer.tokens["prompt"] > 100 and answer.tokens["completion"] > 0
    assert "[1] (Variational Autoencoders" in answer.prompt
    assert bot.feedback.answer_trace(answer.id)["prompt"] == answer.prompt


def test_question_outside_the_corpus_is_refused(corpus_bot):
    answer = corpus_bot.ask("Who won the football World Cup in 2018?")
    assert answer.refused
    assert answer.answer == REFUSAL
    assert answer.citations == []
    assert answer.refusal_reason == "no_evidence"


def test_a_question_in_another_language_than_the_documents_is_refused(corpus_bot):
    """What the README says of the English embedder: it seldom matches a German or French
    question to an English document, though the corpus answers both (gans.md)."""
    for question in ("Wer hat GANs eingeführt?", "Qui a introduit les GAN ?"):
        assert corpus_bot.ask(question, record=False).refused, question
    assert not corpus_bot.ask("Who introduced GANs?", record=False).refused


def test_repetition_penalty_spares_the_prompt(torch_generator):
    """A grounded answer quotes its passages and the refusal quotes the system prompt, so only
    tokens the reply itself has produced are penalised (the llama.cpp backend's penalty is
    checked against this one in test_generators.py)."""
    import torch

    kwargs = torch_generator._generate_kwargs(8, 0.0, n_prompt=3)
    ids = torch.tensor([[11, 12, 13, 14]])  # three prompt tokens, then the reply's first token
    scores = kwargs["logits_processor"](ids, torch.ones(1, 32))
    assert scores[0, 11:14].tolist() == [1.0, 1.0, 1.0]
    assert float(scores[0, 14]) < 1.0 and float(scores[0, 20]) == 1.0


def test_streaming_yields_text_then_the_answer(corpus_bot):
    """An extracted answer is whole before it is shown, so it streams as one piece that stands."""
    events = list(corpus_bot.ask_stream("When were GANs introduced and by whom?"))
    pieces, final = events[:-1], events[-1]
    assert pieces == [final.answer]
    assert not final.refused
    assert "gans.md" in {Path(c.source).name for c in final.citations}


@pytest.mark.slow
def test_the_generate_mode_streams_the_models_text(corpus_bot):
    events = list(corpus_bot.with_settings(answer_mode="generate").ask_stream("When were GANs introduced and by whom?"))
    pieces, final = events[:-1], events[-1]
    assert pieces and all(isinstance(p, str) for p in pieces)
    assert "".join(pieces) == final.answer  # what streamed is what stays
    assert not final.refused and final.raw_reply


def test_cli_ask_json_shape_then_vote_and_export(corpus_bot, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ragbot", "ask", "What is generative AI?", "--json",
         "--data-dir", str(corpus_bot.settings.data_dir)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {"id", "answer", "refused", "citations", "passages", "model", "adapter", "timings_ms", "tokens",
                        "correction_of"}
    assert out["correction_of"] is None
    assert set(out["timings_ms"]) == {"retrieve", "evidence", "generate"}
    assert set(out["tokens"]) == {"prompt", "completion"}
    assert len(out["passages"]) == 5
    for p in out["passages"]:
        assert {"n", "source", "page", "chunk_id", "score", "text"} <= set(p)
    for c in out["citations"]:
        assert set(c) == {"n", "source", "page", "chunk_id", "score", "text"}
    assert out["passages"][0]["source"].endswith("what-is-generative-ai.md")

    data_dir = str(corpus_bot.settings.data_dir)

    def ragbot(*args):
        done = subprocess.run([sys.executable, "-m", "ragbot", *args, "--data-dir", data_dir],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    import re

    def ups() -> int:  # other tests may have voted in the shared data dir: count from here on
        return int(re.search(r"(\d+) up", ragbot("feedback", "stats")).group(1))

    before = ups()
    assert "vote up" in ragbot("feedback", "vote", out["id"], "up", "--comment", "good")
    exported = tmp_path / "kto.jsonl"
    ragbot("feedback", "export", "--format", "kto", "--out", str(exported))
    # An extracted answer was never a model's reply to a prompt: it is not exported as one.
    assert all(row["prompt"] for row in map(json.loads, exported.open()))
    assert out["answer"] not in {row["completion"] for row in map(json.loads, exported.open())}
    written = json.loads(ragbot("ask", "What is generative AI?", "--json", "--answer-mode", "generate"))
    ragbot("feedback", "vote", written["id"], "up")
    ragbot("feedback", "export", "--format", "kto", "--out", str(exported))
    rows = [json.loads(line) for line in exported.open()]
    trace = corpus_bot.feedback.answer_trace(written["id"])
    assert trace["prompt"] and {"prompt": trace["prompt"], "completion": written["answer"], "label": True} in rows
    assert ups() == before + 2


def test_avoid_start_bans_only_the_replys_first_token(torch_generator):
    """With the answerability check saying the answer is there, the reply may not open with the
    refusal; a real generation on an unrelated passage, where refusing is the natural reply.
    (The transformers backend; llama.cpp's ban is tested in test_generators.py.)"""
    import torch

    from ragbot.answer.generation import build_prompt
    from ragbot.types import Passage

    generator = torch_generator
    first = generator.tokenizer(REFUSAL, add_special_tokens=False)["input_ids"][0]
    kwargs = generator._generate_kwargs(8, 0.0, n_prompt=3, avoid_start=REFUSAL)
    at_start = kwargs["logits_processor"](torch.tensor([[1, 2, 3]]), torch.zeros(1, first + 1))
    later = kwargs["logits_processor"](torch.tensor([[1, 2, 3, 4]]), torch.zeros(1, first + 1))
    assert at_start[0, first] == float("-inf") and at_start[0, 0] == 0.0
    assert later[0, first] == 0.0

    passage = Passage(chunk_id=1, source="bananas.txt", title="Bananas", section="", page=None,
                      text="Bananas are yellow fruit grown in tropical regions of the world.", score=1.0, rank=1)
    prompt = build_prompt("How many attention heads does SmolLM2 use?", [passage], render=generator.render,
                          count_tokens=generator.count_tokens, budget=1500)
    reply = generator.generate(prompt.text, 6, avoid_start=REFUSAL)
    ids = generator.tokenizer(reply.text, add_special_tokens=False)["input_ids"]
    assert ids and ids[0] != first


def test_an_extracted_answer_states_only_what_a_passage_states(corpus_bot):
    """The default answer quotes a passage sentence, so it cannot invent a name or a number in any
    language; the reply checks that read English question words (answer_type.py) are gone."""
    import re

    window = ("A transformer can only attend to a limited number of tokens at once, called its context window. "
              "SmolLM2, for example, has a context window of 8,192 tokens.")
    stated = corpus_bot.ask("How large is the context window of SmolLM2?", passages=[window], record=False)
    assert not stated.refused
    assert stated.answer == "SmolLM2, for example, has a context window of 8,192 tokens [1]."
    gans = ("StyleGAN (NVIDIA) generates highly realistic human faces and lets users control style at "
            "different levels of detail. CycleGAN translates images between domains without paired examples.")
    other = corpus_bot.ask("How many layers does the StyleGAN generator have?", passages=[gans], record=False)
    said = re.sub(r"\s*\[\d+\]", "", other.answer)
    assert other.refused or said.rstrip(".") in gans


def test_stop_ends_generation_within_a_second(corpus_bot):
    """The chat's Stop: the answer in progress ends, and so does the model's decoding thread."""
    import threading
    import time as clock

    from ragbot.interfaces.handlers import ChatHandlers
    from ragbot.interfaces.rendering import STOPPED_MARK

    writer = corpus_bot.with_settings(answer_mode="generate", max_new_tokens=400)
    writer.use_generator(corpus_bot.generator)
    handlers = ChatHandlers(writer)
    before = threading.active_count()
    steps = handlers.respond("Explain in detail how diffusion models generate images.", [], "stop-test", 5, 0.0,
                             False, session="s")
    for history, sources, _ in steps:
        if history[-1]["content"]:  # the first piece has been shown
            break
    asked = clock.perf_counter()
    handlers.request_stop("s")
    *_, (history, sources, _) = steps
    assert clock.perf_counter() - asked < 1.0
    assert "Stopped" in sources and "metadata" not in history[-1]  # not kept, nothing to rate
    assert history[-1]["content"].endswith(STOPPED_MARK)  # and the message says so by its vote buttons
    deadline = clock.perf_counter() + 1.0
    while threading.active_count() > before and clock.perf_counter() < deadline:
        clock.sleep(0.05)
    assert threading.active_count() <= before  # the model is not decoding on in the background
    # An answer that ends by itself is kept and can be rated: nothing else sets the stop.
    short = corpus_bot.with_settings(answer_mode="generate", max_new_tokens=24)
    short.use_generator(corpus_bot.generator)
    *_, (history, sources, _) = ChatHandlers(short).respond("What is a GAN?", [], "stop-test-2", 5, 0.0, False,
                                                           session="s")
    assert history[-1]["metadata"]["id"] and "Stopped" not in sources


def test_cli_search_says_why_its_scores_do_not_fall_down_the_list():
    """The number shown is the embedder's cosine, the order the search's: said when they differ."""
    from ragbot.interfaces.cli import search_order_note
    from ragbot.types import Passage

    def passages(*scores):
        return [Passage(chunk_id=i, source="a.md", title="a", section="", page=None, text="t", score=s, rank=i + 1)
                for i, s in enumerate(scores)]

    assert search_order_note(passages(0.6, 0.5, 0.5), "hybrid") == ""
    note = search_order_note(passages(0.225, 0.244), "hybrid")
    assert "hybrid search" in note and "cosine" in note
    assert "ranking embedder" in search_order_note(passages(0.2, 0.3), "dense")


def test_cli_searches_only_the_documents_named_with_in(corpus_bot, tmp_path):
    def search(*args):
        return subprocess.run([sys.executable, "-m", "ragbot", "search", "What is mode collapse in a GAN?", *args,
                               "--data-dir", str(corpus_bot.settings.data_dir)],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)

    done = search("--json", "-k", "3", "--in", str(ROOT / "corpus" / "vaes.md"))
    assert done.returncode == 0, done.stderr
    assert [Path(p["source"]).name for p in json.loads(done.stdout)] == ["vaes.md"] * 3
    done = search("--in", str(ROOT / "corpus" / "vaes.md"), "--in", str(tmp_path / "nothing-here"))  # each path counts
    assert done.returncode == 2 and "no stored document is at" in done.stderr and "nothing-here" in done.stderr


def test_cli_refusal_with_in_says_only_those_documents_were_searched(corpus_bot):
    """helper-83's drive: `ask … --in docs/recipes` refused as if no document held the answer."""
    def ask(*args):
        return subprocess.run([sys.executable, "-m", "ragbot", "ask", "What is mode collapse in a GAN?", *args,
                               "--data-dir", str(corpus_bot.settings.data_dir)],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)

    vaes = str(ROOT / "corpus" / "vaes.md")
    done = ask("--in", vaes)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("I don't know")
    assert f"(searched only the 1 document under --in {vaes}; without --in, every stored document is searched)" in done.stdout
    answered = ask("--in", str(ROOT / "corpus" / "gans.md"))
    assert "[1]" in answered.stdout and "searched only" not in answered.stdout  # said only under a refusal


def test_cli_interactive_ask_answers_without_loading_the_generator(corpus_bot, tmp_path):
    """`ragbot ask` with no question reads questions from its input; in the extract mode (the
    default) it never needs the generator, so one that cannot be loaded does not stop it."""
    done = subprocess.run(
        [sys.executable, "-m", "ragbot", "--data-dir", str(corpus_bot.settings.data_dir),
         "--generator", str(tmp_path / "no-such-model.gguf"), "ask"],
        input="What is mode collapse in a GAN?\n", capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "[1]" in done.stdout and "gans.md" in done.stdout, done.stdout
    assert "generator" not in done.stderr, done.stderr  # neither loaded nor announced
    # A piped question is shown after its prompt, as a terminal echoes it; the answer stood on the prompt's line.
    assert "\n> What is mode collapse in a GAN?\nIn mode collapse" in done.stdout, done.stdout


def test_cli_interactive_ask_takes_a_follow_up_as_the_chat_page_does(corpus_bot):
    """In the terminal chat a follow-up is searched with the question before it, as on the page
    (RagBot.standalone_query): "And HumanEval?" alone finds nothing to quote about it."""
    first, turn = "What does the MMLU benchmark test?", "And HumanEval?"
    done = subprocess.run(
        [sys.executable, "-m", "ragbot", "--data-dir", str(corpus_bot.settings.data_dir), "ask"],
        input=f"{first}\n{turn}\n", capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    ids = re.findall(r"\(answer (\w+): rate it", done.stdout)
    assert len(ids) == 2, done.stdout
    traces = [corpus_bot.feedback.answer_trace(i) for i in ids]
    assert traces[0]["retrieval_query"] == first  # a first question is searched as asked
    assert traces[1]["retrieval_query"] == f"{first} {turn}"
    assert traces[0]["conversation_id"] == traces[1]["conversation_id"] and traces[1]["turn"] == 2
    assert traces[1]["answer"].startswith("HumanEval checks"), done.stdout


def test_cli_interactive_ask_joins_a_third_turn_with_what_the_second_searched(corpus_bot):
    """As on the page (docs/benchmarks.md §36): the third turn is joined with the second turn's
    query, which holds the subject, not with the second question alone."""
    turns = ["What is the transformer architecture?", "Who introduced it?", "What did it replace?"]
    done = subprocess.run(
        [sys.executable, "-m", "ragbot", "--data-dir", str(corpus_bot.settings.data_dir), "ask"],
        input="\n".join(turns) + "\n", capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    ids = re.findall(r"\(answer (\w+): rate it", done.stdout)
    assert len(ids) == 3, done.stdout
    traces = [corpus_bot.feedback.answer_trace(i) for i in ids]
    assert [t["retrieval_query"] for t in traces] == [turns[0], " ".join(turns[:2]), " ".join(turns)]
    assert traces[2]["answer"].startswith("It replaced recurrent networks"), done.stdout


def test_cli_refuses_an_empty_question_or_query(corpus_bot):
    for args in (["ask", ""], ["search", "  "]):
        done = subprocess.run([sys.executable, "-m", "ragbot", "--data-dir", str(corpus_bot.settings.data_dir), *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=120, input="What is a GAN?\n")
        assert done.returncode == 2 and "is empty" in done.stderr, (args, done.stderr)
        assert "[1]" not in done.stdout, done.stdout  # not taken as a start of the interactive chat
