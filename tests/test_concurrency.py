"""Twenty chat sessions at once against a running `ragbot chat`, through gradio_client: every
session gets its answer, and every feedback event lands on the right answer. Latencies are
printed (timing targets live in benchmarks, not in tests)."""

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ragbot import RagBot
from ragbot.interfaces.rendering import literal

from conftest import ROOT

QUESTIONS = [
    "When were GANs introduced and by whom?",
    "What is the capital of Australia?",  # declined before generation
    "Who introduced the variational autoencoder?",
    "How do I bake sourdough bread?",  # declined before generation
]
SESSIONS = 20


def test_twenty_concurrent_sessions_lose_no_feedback(server):
    from gradio_client import Client

    url, data_dir = server

    def session(i: int) -> tuple[str, str, float]:
        client = Client(url, verbose=False)
        question = QUESTIONS[i % len(QUESTIONS)]
        started = time.perf_counter()
        history, _sources, _box = client.predict(question, [], 5, 0.0, False, {}, api_name="/respond")
        elapsed = time.perf_counter() - started
        comment = f"session {i}"
        status, comment_box, correction_box = client.predict(history, comment, "", None, api_name="/save")
        assert (comment_box, correction_box) == ("", "")  # emptied once saved
        assert status == f"Saved your comment with answer 1 (“{literal(question)}”).", status
        return history[-1]["metadata"]["id"], comment, elapsed

    with ThreadPoolExecutor(max_workers=SESSIONS) as pool:
        results = list(pool.map(session, range(SESSIONS)))

    latencies = sorted(r[2] for r in results)
    print(f"\n{SESSIONS} concurrent sessions: answer latency median {statistics.median(latencies):.1f}s, "
          f"max {latencies[-1]:.1f}s")
    bot = RagBot.open(data_dir)
    try:
        ids = {answer_id for answer_id, _, _ in results}
        assert len(ids) == SESSIONS  # one recorded answer per session
        for answer_id, comment, _ in results:
            saved = bot.feedback.feedback(answer_id)
            assert saved is not None and saved.comment == comment, (answer_id, comment)
            assert bot.feedback.answer_trace(answer_id)["question"] in QUESTIONS
    finally:
        bot.close()


def test_login_is_required_when_auth_is_set(corpus_bot):
    from gradio_client import Client

    from conftest import running_chat

    with running_chat(corpus_bot.settings.data_dir, "--auth", "ann:s3cret") as url:
        with pytest.raises(Exception):
            Client(url, verbose=False)
        client = Client(url, auth=("ann", "s3cret"), verbose=False)
        assert "/respond" in client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        # The stored PDFs the page links to are behind the same login.
        import urllib.error
        import urllib.request

        pdf = corpus_bot.store.document(str(ROOT / "corpus" / "generative-ai-applications-by-industry.pdf"))
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}ragbot/documents/{pdf.id}", timeout=10)
        assert refused.value.code == 401


def test_malformed_auth_is_refused_with_a_message(corpus_bot):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "ragbot", "chat", "--auth", "no-colon", "--no-default-corpus",
                           "--data-dir", str(corpus_bot.settings.data_dir)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2
    assert "--auth / RAGBOT_AUTH must look like user:password" in done.stderr


def test_a_vote_for_an_answer_another_session_got_is_refused(server):
    """Through the public API, a client sends back a history holding another session's answer id."""
    from gradio_client import Client

    url, data_dir = server
    ann, mallory = Client(url, verbose=False), Client(url, verbose=False)
    history, _sources, _box = ann.predict("Who introduced the variational autoencoder?", [], 5, 0.0, False, {},
                                          api_name="/respond")
    answer_id = history[-1]["metadata"]["id"]
    assert mallory.predict(history, "", "A forged correction [1].", None, api_name="/save")[0] == \
        "Not saved: that answer was not given in this session."
    assert ann.predict(history, "fine", "", None, api_name="/save")[0].startswith("Saved your comment with answer 1 (")
    bot = RagBot.open(data_dir)
    try:
        saved = bot.feedback.feedback(answer_id)
        assert (saved.comment, saved.correction) == ("fine", None)
    finally:
        bot.close()


def test_the_embedder_serves_many_threads_at_once(embedder):
    """Chat sessions embed at the same time: questions (padded batches), token counts and
    offsets (no padding) from many threads, each answer the same as alone. The fast tokenizer
    keeps padding and truncation as state each call sets; unguarded, this failed within a few
    rounds ("Unable to create tensor ... padding=True")."""
    texts = [("word " * (3 + i % 17)).strip() + f" {i}" for i in range(40)]
    expected = embedder.encode(texts)
    counts = embedder.count_tokens(texts)

    def work(i: int):
        if i % 3 == 0:
            return "encode", i, embedder.encode(texts[i: i + 8])
        if i % 3 == 1:
            return "count", i, embedder.count_tokens(texts[i: i + 8])
        return "offsets", i, embedder.token_offsets(texts[i])

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(work, list(range(30)) * 8))
    for kind, i, value in results:
        if kind == "encode":
            np.testing.assert_allclose(value, expected[i: i + 8], atol=2e-2)
        elif kind == "count":
            assert value == counts[i: i + 8]
        else:
            assert len(value) == counts[i]


def test_counting_a_long_documents_tokens_lets_questions_in_between(embedder, monkeypatch):
    """Chunking a long document counts the tokens of thousands of sentences: the embedder's lock
    is taken a part at a time, so a chat question's embedding waits for one part, not all."""
    import threading

    texts = [f"sentence number {i} of a long report" for i in range(600)]
    alone = [len(ids) for ids in embedder.tokenizer(texts, add_special_tokens=False)["input_ids"]]
    taken = []

    class Counted:
        def __init__(self):
            self.lock = threading.Lock()

        def __enter__(self):
            taken.append(1)
            return self.lock.__enter__()

        def __exit__(self, *exc):
            return self.lock.__exit__(*exc)

    monkeypatch.setattr(embedder, "_lock", Counted())
    assert embedder.count_tokens(texts) == alone
    assert len(taken) == 3  # 600 texts in parts of 256
    taken.clear()
    assert [len(p) for p in embedder.word_piece_ids(texts)] == [len(p) for p in embedder.word_pieces(texts)]
    assert len(taken) == 6
