"""PyTorch definitions of foveal's networks, for the torch backend and for ``engine/`` (training and export).

Importing ``foveal`` never imports this package or torch: only the torch backend and ``engine/`` do, lazily.
"""
