//! Automatic call distribution: drives calls, owns queues and the agent table.
