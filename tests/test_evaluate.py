"""The ruler (u2net/evaluate.py, `u2net eval`): our u2netp masks against the published u2netp
masks of the official test images, the matting metrics on cases worked out by hand, and the
command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from u2net.cli import main
from u2net.effects import OptionError
from u2net.evaluate import (
    METRICS,
    connectivity_error,
    evaluate,
    format_table,
    gradient_error,
    matting_metrics,
    mse,
    sad,
)
from u2net.predictor import Predictor

# Small official images (the 6-megapixel bike would only make the run slower).
SUBSET = ("girl", "hockey", "horse", "im_14", "whisk")


@pytest.fixture(scope="module")
def subset(reference_dir, tmp_path_factory):
    """A folder of links to a few official test images (links, never copies of them)."""
    folder = tmp_path_factory.mktemp("subset")
    for name in SUBSET:
        src = next((reference_dir / "images").glob(f"{name}.*"))
        (folder / src.name).symlink_to(src)
    return folder


def test_our_u2netp_matches_the_published_masks(subset, reference_dir, weights_dir):
    predictor = Predictor("u2netp", weights=weights_dir / "u2netp.onnx", device="cpu")
    result = evaluate(subset, reference_dir / "u2netp_results", predictor=predictor)
    got = result["metrics"]
    assert result["count"] == len(SUBSET) and not result["missing"]
    assert set(got) == set(METRICS)
    # The published masks are made by the same network: the mattes agree to ~0.0002.
    assert got["alpha_mae"] < 0.001, got
    assert got["mse"] < 1e-4 and got["sad"] < 0.5
    # Binarised at 128 they are near-perfect ground truth for our soft masks.
    assert got["max_f"] > 0.99 and got["max_e"] > 0.99 and got["s_measure"] > 0.95, got
    assert got["mae"] < 0.05 and got["weighted_f"] > 0.9, got
    assert [r["name"] for r in result["images"]] == sorted(SUBSET)
    table = format_table(result, per_image=True)
    assert "alpha_mae" in table and "hockey" in table


def test_u2netp_against_u2net_is_worse_than_against_itself(subset, reference_dir):
    result = evaluate(subset, reference_dir / "u2net_results",
                      predictions_dir=reference_dir / "u2netp_results", connectivity=False)
    got = result["metrics"]
    assert "connectivity" not in got
    assert 0.001 < got["alpha_mae"] < 0.1 and got["max_f"] < 0.999, got


def test_matting_metrics_by_hand():
    truth = np.zeros((20, 20))
    truth[:, 10:] = 1.0
    off = truth.copy()
    off[0, 0] = 0.5  # one pixel wrong by 0.5
    assert sad(off, truth) == pytest.approx(0.5 / 1000)
    assert mse(off, truth) == pytest.approx(0.25 / 400)
    assert gradient_error(truth, truth) == 0.0 and connectivity_error(truth, truth) == 0.0
    # uint8 and 0..1 floats are the same matte.
    assert sad((off * 255).round().astype(np.uint8), (truth * 255).astype(np.uint8)) == pytest.approx(
        sad(np.round(off * 255) / 255, truth))
    # A blurred edge has a gradient error; a hole far from the object a connectivity error.
    blurred = truth.copy()
    blurred[:, 9], blurred[:, 10] = 0.5, 0.5
    assert gradient_error(blurred, truth) > 0
    island = truth.copy()
    island[5, 2] = 1.0  # a speck not connected to the object
    assert connectivity_error(island, truth) > 0
    # A trimap restricts every sum to its unknown band (values strictly between 0 and 255).
    trimap = np.where(truth > 0, 255, 0).astype(np.uint8)
    trimap[:, 8:12] = 128
    both = matting_metrics(off, truth, trimap)
    assert both["sad"] == 0.0 and both["mse"] == 0.0  # the wrong pixel is outside the band
    assert matting_metrics(blurred, truth, trimap)["sad"] == pytest.approx(20 * 0.5 * 2 / 1000)
    with pytest.raises(OptionError, match="same size"):
        matting_metrics(np.zeros((3, 3)), np.zeros((4, 4)))


def test_evaluate_refuses_what_it_cannot_do(subset, reference_dir, tmp_path):
    with pytest.raises(OptionError, match="exactly one"):
        evaluate(subset, reference_dir / "u2netp_results")
    with pytest.raises(OptionError, match="does not exist"):
        evaluate(subset, tmp_path / "nope", predictions_dir=subset)
    with pytest.raises(OptionError, match="same name"):
        evaluate(subset, tmp_path, predictions_dir=subset)


def test_eval_command_prints_a_table_and_writes_json(subset, reference_dir, tmp_path, capsys):
    # Predictions for two of the five images only: the rest are reported as skipped.
    preds = tmp_path / "preds"
    preds.mkdir()
    for name in ("girl", "whisk"):
        Image.open(reference_dir / "u2net_results" / f"{name}.png").save(preds / f"{name}.png")
    out = tmp_path / "result.json"
    code = main(["eval", str(subset), str(reference_dir / "u2netp_results"), "--predictions",
                 str(preds), "--json", str(out), "--per-image", "-q"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "max_f" in printed and "girl" in printed and "skipped" in printed
    data = json.loads(out.read_text())
    assert data["count"] == 2 and sorted(data["missing"]) == ["hockey", "horse", "im_14"]
    assert set(data["metrics"]) == set(METRICS)


def test_eval_command_refuses_a_missing_folder(tmp_path, capsys):
    code = main(["eval", str(tmp_path / "no_images"), str(tmp_path), "--predictions", str(tmp_path)])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
