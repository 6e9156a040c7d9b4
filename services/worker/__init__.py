"""The live monitor worker: a thin FastStream shell around the engine (all cores)."""
