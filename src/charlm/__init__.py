"""charlm: character-level LSTM language models — train on your text, write from a prefix, score any text."""

__version__ = "0.1.0"
