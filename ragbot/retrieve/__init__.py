"""Retrieve: the embedder, the FAISS vector index and the BM25 index, and how they are searched."""
