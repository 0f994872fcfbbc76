"""PyTorch definitions of foveal's networks, their training loop and ONNX export: for the torch backend, for
``foveal finetune`` and for ``engine/`` (training recipes).

Importing ``foveal`` never imports this package or torch: only the torch backend, fine-tuning and ``engine/`` do,
lazily.
"""
