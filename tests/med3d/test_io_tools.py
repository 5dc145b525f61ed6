from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nanorepro.common.errors import UserError
from nanorepro.med3d.io import load_nifti

ANATOMICAL = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"  # a real 33x41x25 T1 in nibabel's wheel


def test_real_volume_from_nibabel_loads_onto_the_model_grid():
    volume = load_nifti(ANATOMICAL, 16, 32)
    assert volume.shape == (16, 32, 32) and volume.dtype == np.float32
    assert 0 <= volume.min() and volume.max() <= 1 and volume.std() > 0.1


def _write(tmp_path, array, name="v.nii.gz"):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(np.asarray(array, dtype=np.float32), np.eye(4)), str(path))
    return path


@pytest.mark.parametrize("array, message", [
    (np.full((8, 8, 8), 3.0), "constant"),
    (np.where(np.arange(512).reshape(8, 8, 8) == 5, np.nan, 1.0), "NaN"),
    (np.ones((8, 8)), "expected a 3-D volume"),
])
def test_bad_volumes_are_clear_errors(tmp_path, array, message):
    with pytest.raises(UserError, match=message):
        load_nifti(_write(tmp_path, array), 16, 32)


def test_missing_or_foreign_files_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_nifti(tmp_path / "none.nii", 16, 32)
    bogus = tmp_path / "scan.nii.gz"
    bogus.write_text("not a volume")
    with pytest.raises(UserError, match="not a readable NIfTI"):
        load_nifti(bogus, 16, 32)


def test_4d_series_uses_the_first_frame(tmp_path):
    series = np.random.default_rng(0).random((8, 8, 8, 2))
    assert np.allclose(load_nifti(_write(tmp_path, series), 8, 8), load_nifti(_write(tmp_path, series[..., 0], "f.nii"),
                                                                               8, 8))


def test_train_then_report_and_ask_on_a_nifti_file(tmp_path, cli):
    model = tmp_path / "med3d.safetensors"
    small = ["train_volumes=16", "test_volumes=4", "slice_volumes=4", "pretrain_steps=2", "pretrain_batch=4",
             "stage1_steps=2", "stage2_steps=2", "batch_size=4"]
    code, out, _ = cli("med3d", "train", "--out", str(model), *[a for s in small for a in ("--set", s)])
    assert code == 0 and model.exists() and "closed_acc=" in out
    code, out, _ = cli("med3d", "report", "--model", str(model), "--volume", str(ANATOMICAL))
    assert code == 0
    code, out, _ = cli("med3d", "ask", "--model", str(model), "--volume", str(ANATOMICAL),
                       "--question", "how many lesions are there ?", "--option", "one", "--option", "two")
    assert code == 0 and out.strip() in ("one", "two")
    code, _, err = cli("med3d", "ask", "--model", str(model), "--volume", str(ANATOMICAL),
                       "--question", "is the pancreas enlarged ?")
    assert code == 2 and "pancreas" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("med3d", "report", "--model", str(tmp_path / "missing.safetensors"), "--volume",
                       str(ANATOMICAL))
    assert code == 2
