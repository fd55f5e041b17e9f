"""The OpenAI-compatible backend: `client` talks HTTP and maps errors, `encode` turns media into content parts."""
