"""A corpus of real-world agents (prebuilt, supervisor, swarm, tutorials) and an oracle that
derives the exact expected ledger from what LangGraph itself did. See README.md."""
