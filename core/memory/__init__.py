"""Long-term memory: facts, incidents and summaries in a vector store.

- `store`: `MemoryStore`, the synchronous ChromaDB store (scopes, near-duplicates, model check);
- `embeddings`: the offline ONNX model and the Ollama engine;
- `service`: `MemoryService`, what the agent and the health code use (async, scoped by request);
- `tools`: memory_store, memory_recall, memory_forget;
- `extraction`: facts extracted by the model after a conversation;
- `incidents`: past incidents as the health code reads them.

See docs/memory.md.
"""
