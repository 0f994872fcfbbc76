"""foveal's networks: definitions, tuning/training and export to ONNX + model card (the only code importing torch).

Run from the repository root, e.g. ``python -m engine.export itti-koch --out python/foveal/models/``.
"""
