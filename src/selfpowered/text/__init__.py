"""The text side, shared by augmentation, evaluation and training: instruction libraries and their
presets, text-LLM engines, text metrics, and the echo rule. Nothing here knows about speech models."""
