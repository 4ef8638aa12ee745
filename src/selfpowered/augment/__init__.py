"""Self-powered augmentation: the LLM writes the training targets from transcripts."""
