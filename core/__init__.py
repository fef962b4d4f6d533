"""The agent: events, tools, policy, approvals, store. Imports nothing from adapters/ or bot/."""
