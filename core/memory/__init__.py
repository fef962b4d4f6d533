"""Long-term memory: facts, incidents and summaries in a vector store."""
