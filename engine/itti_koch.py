"""The itti-koch model card: what ``engine.export`` writes beside the network of ``foveal.network.itti_koch``."""
from __future__ import annotations

from typing import Any

from foveal.network.itti_koch import PAD_MULTIPLE, STRIDE, build, readout_fields  # noqa: F401 - build: export hook

TUNING: dict[str, Any] = {
    "command": "python -m engine.tune_itti_koch --images 200",
    "split": "OSIE train (sorted 1001..1700, default_rng(0).permutation, first 80%)",
    "images": 200,
    "objective": "mean information gain over uniform, bits/fixation (log-likelihood)",
    "grid": {
        "contrast": [0.5, 1.0, 1.5, 2.0, 3.0, 4.0],
        "epsilon": [0.001, 0.003, 0.01, 0.03, 0.1],
        "blur_sigma": [0.0, 0.5, 1.0, 1.5, 2.0],
        "prior_sigma": [0.15, 0.2, 0.25, 0.3, 0.4, 0.6],
    },
    "train_sample_scores": {
        "chosen": {"IG": 0.7448, "NSS": 1.0938},
        "centre_prior_only": {"IG": 0.4827, "NSS": 0.8207},
        "without_prior": {"IG": 0.401, "NSS": 0.7672},
    },
}


def card_fields() -> dict[str, Any]:
    """Everything in the itti-koch model card except what export adds (file name, sha256, creation)."""
    return {
        "name": "itti-koch",
        "version": "1.0.0",
        "description": (
            "Classical bottom-up saliency (Itti, Koch & Niebur 1998) as a fixed-filter network: Gaussian "
            "pyramids of intensity, red-green / blue-yellow opponency and Gabor orientation, centre-surround "
            "differences (c in {2,3,4}, s = c+3, c+4), the N(.) map normalisation and conspicuity maps combined "
            "at stride 16. Read-out added for fixation prediction (not part of the 1998 model): "
            "contrast*log(blur(S)+epsilon) plus a Gaussian centre-bias log prior in normalised coordinates "
            "(centred on the padded input). No learned weights."
        ),
        "citation": (
            "L. Itti, C. Koch, E. Niebur. A model of saliency-based visual attention for rapid scene analysis. "
            "IEEE Transactions on Pattern Analysis and Machine Intelligence 20(11):1254-1259, 1998. "
            "doi:10.1109/34.730558"
        ),
        "licence": "Apache-2.0 (foveal's own implementation, python/foveal/network/itti_koch.py)",
        "input": {
            "name": "image",
            "layout": "NCHW",
            "dtype": "float32",
            "color": "RGB",
            "working_size": 384,
            "pad_multiple": PAD_MULTIPLE,
            "pad_mode": "edge",
            "mean": [0.0, 0.0, 0.0],
            "std": [255.0, 255.0, 255.0],
        },
        "output": {"name": "log_density", "stride": STRIDE},
        "postprocess": {"blur_sigma": 0.0},
        "provenance": {
            "source": "python/foveal/network/itti_koch.py, engine/itti_koch.py",
            "training": {
                "learned_weights": False,
                "readout": readout_fields(),
                "readout_units": {
                    "blur_sigma": "output cells (16 input pixels)",
                    "prior_sigma": "fraction of the padded input's width (x) and height (y)",
                },
                "tuning": TUNING,
            },
        },
        "metrics": {},
    }
