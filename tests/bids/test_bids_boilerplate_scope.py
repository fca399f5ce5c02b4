"""The methods boilerplate describes only what ran: a participant run trained no model, a group run
with --model trained none either, and --skip-analysis read no latent space."""
from __future__ import annotations

import threading
import time

from latentbids.bids.boilerplate import build_boilerplate
from latentbids.config import RunConfig


def _text(**sections) -> str:
    config = RunConfig()
    for section, values in sections.items():
        for key, value in values.items():
            setattr(getattr(config, section), key, value)
    return build_boilerplate(config).markdown()


def test_participant_run_describes_no_model():
    text = _text(execution={"analysis_level": "participant"})
    assert "## Participant level" in text and "## Group level" not in text
    assert "PyTorch" not in text and "SHAP" not in text


def test_group_run_describes_what_it_did():
    trained = _text(execution={"analysis_level": "group"}, model={"latent_dim": 16})
    assert "autoencoder (latent dimension 16" in trained and "was trained" in trained and "SHAP" in trained
    reused = _text(execution={"analysis_level": "group"}, model={"model": "/out/models/ae-K8"})
    assert "existing 3D convolutional autoencoder (ae-K8" in reused and "was trained" not in reused
    skipped = _text(execution={"analysis_level": "group"}, analysis={"enabled": False})
    assert "was trained" in skipped and "SHAP" not in skipped and "t-SNE" not in skipped


def test_sensitivity_atlases_are_named_with_their_error_rate():
    one = _text(execution={"analysis_level": "group"})
    assert "sensitivity analysis" not in one and "AAL atlas" in one
    three = _text(execution={"analysis_level": "group"}, spatial={"atlas": ["AAL", "AAL3", "HCPEx"]})
    assert "repeated through the AAL3, HCPEx atlases as a sensitivity analysis" in three
    assert "the AAL atlas, declared first, carries the headline; each further atlas at eta = 0.025" in three


def test_output_lock_is_removed_and_still_excludes(tmp_path):
    """The dataset_description lock leaves no 0-byte file, and jobs racing for it still take turns."""
    from latentbids.utils.locks import locked

    lock = tmp_path / "logs" / ".dataset_description.lock"
    inside, worst = [0], [0]

    def job():
        for _ in range(20):
            with locked(lock, remove=True):
                inside[0] += 1
                worst[0] = max(worst[0], inside[0])
                time.sleep(0.001)
                inside[0] -= 1

    threads = [threading.Thread(target=job) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert worst[0] == 1 and not lock.exists()


def test_init_output_dataset_leaves_no_lock(tmp_path):
    from latentbids.bids.derivatives import init_output_dataset
    from tests.helpers import write_minimal_dataset

    bids = write_minimal_dataset(tmp_path / "bids", {"01": None})
    out = init_output_dataset(tmp_path / "out", bids)
    assert (out / "dataset_description.json").is_file() and not list(out.rglob("*.lock"))
