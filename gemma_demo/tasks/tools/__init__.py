"""Tools the agent loop offers the model: safe utilities, the app's own tasks, MCP servers."""
