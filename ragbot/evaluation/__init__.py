"""Evaluation: retrieval and answer metrics, BEIR and QA-file runners, markdown reports."""
