"""Converters from the formats that registry packages ship (CTranslate2, GGUF) to Hugging Face folders."""
