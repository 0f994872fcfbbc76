"""A value wrong on its face (out of range, not a number, not an allowed word, a malformed date or duration) is a
malformed command line: every subcommand refuses it while parsing, exit status 2, naming the flag as argparse does
("error: argument --flag: ..."), before any of the command's work. Parse only: each command line around the bad
value is valid but fails fast (exit 1) in its work, which the first test checks."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from foveal.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
IMAGE, ELEMENTS = str(EXAMPLES / "creative.png"), str(EXAMPLES / "creative.json")


def base(command: str, tmp: Path) -> list[str]:
    """A valid command line for ``command`` whose work fails at once (exit 1): its output is taken by a file, or
    its input is missing."""
    taken = tmp / "taken"
    taken.write_text("x")
    missing = str(tmp / "missing")
    return {
        "predict": ["predict", IMAGE, "-o", str(taken)],
        "score": ["score", IMAGE, "--elements", ELEMENTS, "-o", str(taken)],
        "norms": ["norms", "build", missing, "-o", str(tmp / "n.json")],
        "eval": ["eval", "--dataset", missing, "-o", str(taken)],
        "compare": ["compare", IMAGE, IMAGE, "--elements", ELEMENTS, "-o", str(taken)],
        "whatif": ["whatif", IMAGE, "--elements", ELEMENTS, "-o", str(taken)],
        "detect": ["detect", IMAGE, "-o", str(taken)],
        "finetune": ["finetune", missing, "-o", str(taken)],
        "serve": ["serve", "--port", "0", "--norms", f"n={missing}"],
        "outcomes": ["outcomes", "import", missing, "--db", f"sqlite:///{missing}/s.db"],
        "calibrate": ["calibrate", "--db", f"sqlite:///{missing}/s.db", "-o", str(taken)],
        "bench": ["bench", "--model", f"{missing}.onnx"],
    }[command]


ENGINE = [("--batch-size", "0"), ("--batch-size", "abc"), ("--max-pixels", "0"), ("--max-pixels", "nan"),
          ("--max-pixels", "inf"), ("--max-pixels", "many"), ("--device", "tpu"), ("--precision", "fp64")]

#: (command, flag, bad value): each command's options, each with a value wrong on its face.
BAD = [
    *((command, flag, value) for command in ("predict", "score", "norms", "eval", "compare", "whatif")
      for flag, value in ENGINE),
    ("score", "--pass-percentile", "0"), ("score", "--pass-percentile", "150"), ("score", "--pass-percentile", "nan"),
    ("score", "--pass-percentile", "high"), ("score", "--commit-every", "0"), ("score", "--actors", "0"),
    ("score", "--cpus-per-actor", "0"), ("score", "--gpus-per-actor", "0"), ("score", "--gpus-per-actor", "1.5"),
    ("score", "--gpus-per-actor", "half"), ("score", "--creative-id", ""), ("score", "--creative-id", "a/b"),
    ("score", "--creative-id", ".hidden"), ("score", "--elements", ""), ("score", "--format", " "),
    ("calibrate", "--by", "colour"), ("calibrate", "--by", "format,format"), ("calibrate", "--window", "0d"),
    ("calibrate", "--window", "1d"), ("calibrate", "--window", "month"), ("calibrate", "--step", "0d"),
    ("calibrate", "--step", "7x"), ("calibrate", "--metric", "roas"), ("calibrate", "--min-impressions", "0"),
    ("calibrate", "--min-clicks", "-1"), ("calibrate", "--min-creatives", "4"), ("calibrate", "--alpha", "0"),
    ("calibrate", "--alpha", "1"), ("calibrate", "--bootstrap", "99"), ("calibrate", "--bootstrap", "100001"),
    ("calibrate", "--seed", "-1"), ("calibrate", "--until", "2026-13-01"), ("calibrate", "--pass-percentile", "150"),
    ("whatif", "--move", "cta"), ("whatif", "--move", "cta:1.5,0"), ("whatif", "--scale", "logo:0"),
    ("whatif", "--scale", "logo:big"), ("whatif", "--swap", "cta"), ("whatif", "--swap", "cta,cta"),
    ("whatif", "--grid", "0x5"), ("whatif", "--grid", "5"), ("whatif", "--step", "0"), ("whatif", "--top", "0"),
    ("whatif", "--max-overlap", "1.5"), ("whatif", "--max-overlap", "-0.1"),
    ("predict", "--bits", "12"), ("norms", "--format", ""), ("compare", "--elements", ""),
    ("finetune", "--epochs", "0"), ("finetune", "--epochs", "ten"), ("finetune", "--train-blocks", "-1"),
    ("finetune", "--seed", "-1"), ("finetune", "--seed", str(2**63)), ("finetune", "--lr", "0"),
    ("finetune", "--lr", "nan"), ("finetune", "--lr", "1e3"), ("finetune", "--batch", "0"), ("finetune", "--working-size", "16"),
    ("finetune", "--working-size", "5000"), ("finetune", "--train-images", "0"), ("finetune", "--name", "../m"),
    ("finetune", "--name", ".hidden"),
    ("eval", "--split", "dev"), ("eval", "--maps", "blurred"), ("eval", "--metrics", "NSS,AUC"),
    ("eval", "--metrics", ","), ("eval", "--seed", "-1"),
    ("outcomes", "--map", "Impr"), ("outcomes", "--map", "Impr=views"), ("outcomes", "--map", "=clicks"),
    ("detect", "--max-pixels", "0"), ("detect", "--max-pixels", "-inf"),
    ("bench", "--device", "tpu"), ("bench", "--batch", "0"), ("bench", "--batch", "1,x"), ("bench", "--repeats", "0"),
    ("bench", "--repeats", "2.5"), ("bench", "--max-seconds", "0"), ("bench", "--max-seconds", "nan"),
    ("bench", "--max-pixels", "0"),
    ("serve", "--device", "tpu"), ("serve", "--port", "70000"), ("serve", "--port", "-1"), ("serve", "--port", "http"),
    ("serve", "--max-batch", "0"), ("serve", "--max-wait-ms", "-1"), ("serve", "--max-wait-ms", "nan"),
    ("serve", "--max-queue", "1"), ("serve", "--max-body-mb", "0"), ("serve", "--max-pixels", "0"),
    ("serve", "--timeout-ms", "0"), ("serve", "--header-timeout-s", "inf"), ("serve", "--keep-alive-s", "-1"),
    ("serve", "--workers", "0"), ("serve", "--norms", "default"), ("serve", "--norms", "=n.json"),
    ("serve", "--cors-origin", "example.com"), ("serve", "--cors-origin", "null"),
    ("serve", "--allowed-host", "http://example.com/"),
    ("whatif", "--scale", "logo"), ("whatif", "--swap", "a,b,c"), ("whatif", "--grid", "axb"),
    ("calibrate", "--by", "vertical,colour"), ("bench", "--batch", "-1"), ("bench", "--batch", "1.5"),
    ("outcomes", "--map", "Impr=impressions=x"), ("finetune", "--name", "a b"), ("score", "--creative-id", "a\x01"),
    # refused only after the work, or taken without a word: repeats, empty names, a score no store can hold
    ("eval", "--metrics", "NSS,NSS"), ("eval", "--metrics", "CC, KLD,CC"),
    ("calibrate", "--score", ""), ("calibrate", "--score", " "), ("calibrate", "--score", "cta"),
    ("calibrate", "--score", "background_share"), ("calibrate", "--by", ""), ("calibrate", "--by", " , "),
    ("calibrate", "--graph", ""),
    ("serve", "--norms", "n=other.json"),  # the base line names norms n already
    ("serve", "--workers", "99999999999999999999"),
    ("score", "--creative-id", " "), ("score", "--vertical", ""), ("score", "--vertical", " "), ("score", "--tag", ""),
    ("score", "--db", ""), ("score", "--db", " "), ("score", "--db", "mysql://u@h/d"), ("outcomes", "--db", " "),
    ("calibrate", "--db", ""), ("calibrate", "--db", "sqlite://"),
]

#: A library's own word for a value, which starts its messages where the flag's name does not say it.
LIBRARY_WORDS = {"--name": "model name", "--map": "mapping"}


def _exit_status(argv: list[str]) -> int:
    try:
        return main(["-q", *argv])
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize("command", sorted({command for command, _, _ in BAD}))
def test_the_command_lines_around_the_bad_values_are_valid(command, tmp_path, capsys):
    """Else a bad value's exit status 2 could be the rest of the line's."""
    assert _exit_status(base(command, tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.startswith("foveal: error: ") and "argument" not in err, err


@pytest.mark.parametrize("command, flag, value", BAD)
def test_a_value_wrong_on_its_face_is_a_usage_error_naming_the_flag(command, flag, value, tmp_path, capsys):
    # --flag=value: else argparse takes "-inf" for an option, and refuses the line for a missing value
    assert _exit_status([*base(command, tmp_path), f"{flag}={value}"]) == 2
    err = capsys.readouterr().err
    assert f": error: argument {flag}: " in err and "expected one argument" not in err and err.count("\n") == 1, err
    # said once: not "argument --move: move: expected ...", nor "argument --creative-id: creative_id 'a/b' ..."
    said = err.split(f"argument {flag}: ", 1)[1]
    again = re.escape(flag[2:]).replace("\\-", "[-_ ]") + "|" + re.escape(LIBRARY_WORDS.get(flag, flag[2:]))
    assert not re.match(rf"({again})\b", said, re.IGNORECASE), err


def test_serve_takes_a_worker_per_cpu(tmp_path, capsys):
    """--workers 1e20 passed, then started processes, each loading a model, until the machine gave out."""
    most = max(2, os.cpu_count() or 1)  # two on one CPU: a second worker still isolates failures
    assert _exit_status([*base("serve", tmp_path), f"--workers={most}"]) == 1  # the base line's own error
    assert _exit_status([*base("serve", tmp_path), f"--workers={most + 1}"]) == 2
    assert f"argument --workers: must be from 1 to {most} on this machine" in capsys.readouterr().err
