"""Retrieve: the embedder, the FAISS vector index and the BM25 index. RagBot.batch_search (bot.py) runs
them and fuses their rankings."""
