"""The suite's hard switch (tests/conftest.py): no test reaches a real model, whatever it configures."""

from __future__ import annotations

import pytest

from core.llm import LLMError, OllamaLLM
from core.memory.embeddings import EmbeddingError, OllamaEmbedding


@pytest.mark.parametrize("host", ["http://127.0.0.1:11434", "http://ollama.example.com:8080", "http://10.0.0.5:11434"])
def test_a_real_ollama_is_refused(host: str) -> None:
    embedding = OllamaEmbedding(host=host, timeout=2)
    try:
        with pytest.raises((RuntimeError, EmbeddingError), match="never reaches a real service"):
            embedding(["hello"])
    finally:
        embedding.close()


@pytest.mark.asyncio
async def test_the_chat_model_is_refused_too() -> None:
    llm = OllamaLLM(host="http://127.0.0.1:11434", model="qwen3:8b")
    with pytest.raises((RuntimeError, LLMError), match="never reaches a real service"):
        await llm.chat([{"role": "user", "content": "hi"}], tools=[])
