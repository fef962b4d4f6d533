"""Long-term memory: facts, incidents and summaries in a vector store.

- `model`: what a memory is (kinds, scopes, the item a caller adds) and the store's errors;
- `chroma`: the Chroma side: clients, the collection (model check, re-embedding, swap repair), rows;
- `store`: `MemoryStore`, the synchronous store (ranking, near-duplicates, forgetting);
- `embeddings`: the offline ONNX model and the Ollama engine;
- `service`: `MemoryService`, what the agent and the health code use (async, scoped by request);
- `tools`: memory_store, memory_recall, memory_forget;
- `extraction`: facts extracted by the model after a conversation;
- `incidents`: past incidents as the health code reads them.

See docs/memory.md.
"""
