"""Serves a model: loads it the way its library does and answers with it (model_loader.main)."""
import sys

sys.dont_write_bytecode = True
from model_loader import run  # noqa: E402

sys.exit(run())
