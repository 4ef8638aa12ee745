"""ASR corpora: manifests, importers and the offline TTS demo corpus."""
