"""Interfaces: the `ragbot` command and the Gradio chat page, thin layers over RagBot."""
